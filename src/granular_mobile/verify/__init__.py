"""Verification of exported graphs, apart from writing them: ``parity`` (``gdq export
--verify``: every graph on benchmark tiles on this machine's runtimes against the PyTorch
integer reference) and ``arm64`` (``gdq verify --arch arm64``: the aarch64 builds of the same
runtimes under QEMU user-mode emulation, in a root that ``arm64_setup.sh``, shipped with the
package, builds)."""
