"""The `gdq` Typer app and what its commands share: the data defaults, option parsing, the
extras check."""
from __future__ import annotations

import typer

from .. import __version__
from ..defaults import bench_root, train_folders
from ..errors import PARAMETER, ConfigError, require


def _flags_as_switches() -> None:
    """typer 0.29 shows a type after a flag (`--force <bool>`), which reads as if it took a
    value (`--force true` then fails): a flag shows none."""
    from typer.core import TyperOption

    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "_gdq", False):
        return

    def display_type_rich(self, ctx):
        return None if self.is_flag else shown(self, ctx)

    display_type_rich._gdq = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_as_switches()

app = typer.Typer(
    name="gdq",
    help="Granular-DQ super-resolution: train, quantize, evaluate, run.",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# read when the command line is built (its help shows them): $GDQ_DATA_ROOT / $GDQ_BENCH_ROOT (defaults.py)
#: a library parameter whose flag is not --name-with-dashes
FLAG_OF = {"fp_model": "--fp", "verify_root": "--verify-data", "cost_json": "--cost", "json_out": "--json",
           "targets": "--target"}


def as_flags(message: str) -> str:
    """A library message with each parameter it names (``fp_layers``) as its flag (--fp-layers)."""
    return PARAMETER.sub(lambda m: FLAG_OF.get(m.group(1), "--" + m.group(1).replace("_", "-")), message)


DATA_DEFAULT = ",".join(train_folders())
BENCH_DEFAULT = bench_root()


def _version(v: bool) -> None:
    if v:
        typer.echo(f"granular-mobile {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version.")) -> None:
    pass


def _split(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


#: what each extra must bring for a command to start; checked first, in one line, instead of
#: an import error deep in the command
_EXTRA_MODULES = {"torch": ("torch",), "export": ("torch", "onnx")}


def _need(extra: str) -> None:
    for module in _EXTRA_MODULES[extra]:
        require(module, extra)


def _int_list(option: str, s: str) -> tuple[int, ...]:
    """A comma-separated list of integers (``--bits 4,8``), or a one-line error naming the option."""
    try:
        return tuple(int(x) for x in _split(s))
    except ValueError:
        raise ConfigError(f"{option} '{s}' is not a comma-separated list of integers (e.g. 4,5,6,8)") from None


#: options every training command takes alike
_TRAIN_HELP_COMMON = dict(
    data=typer.Option(DATA_DEFAULT, help="Comma-separated folders of HR training images."),
    patch=typer.Option(32, help="LR patch side (pixels)."),
    batch=typer.Option(16, help="Batch size per process."),
    lr=typer.Option(1e-3, help="Peak learning rate (Adam)."),
    schedule=typer.Option("cosine", help="cosine | step"),
    seed=typer.Option(0, help="Random seed."),
    val_root=typer.Option(BENCH_DEFAULT, help="Benchmark root for validation."),
    val_set=typer.Option("Set5", help="Validation set."),
    threads=typer.Option(0, help="CPU threads (0: torch default)."),
    resume=typer.Option(False, "--resume", help="Continue from OUT/last.pt with the run's own options "
                        "(options given here replace them; a larger --iters trains longer)."),
)
