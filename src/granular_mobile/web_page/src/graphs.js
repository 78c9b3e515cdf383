// The exported graphs in onnxruntime-web: one session per graph, created on first use.
// ep: 'wasm' (CPU, integer QLinearConv kernels) or 'webgpu' (ops it lacks fall back to wasm).

export async function loadOrt(ep, threads) {
  const ort = await import(ep === 'webgpu' ? '../ort/ort.webgpu.min.mjs' : '../ort/ort.wasm.min.mjs');
  ort.env.wasm.wasmPaths = new URL('../ort/', import.meta.url).href;
  ort.env.wasm.numThreads = threads;
  ort.env.logLevel = 'error';
  return ort;
}

export function makeGraphs(ort, man, bytes, ep) {
  const sessions = new Map();
  const t = man.tile;
  const session = async (name) => {
    if (!sessions.has(name)) {
      sessions.set(name, ort.InferenceSession.create(bytes.get(name), {
        executionProviders: [ep], graphOptimizationLevel: 'all',
      }));
    }
    return sessions.get(name);
  };
  const feed = (tile) => ({ lr: new ort.Tensor('float32', tile, [1, 3, t, t]) });
  return {
    async controller(tile) {
      const s = await session(man.files.controller);
      const out = await s.run(feed(tile));
      return Number(out.bits.data[0]);
    },
    /** The level gate's predicted gain of each choice (a manifest with a level_gate). */
    async scores(tile) {
      const s = await session(man.files.controller);
      const out = await s.run(feed(tile));
      return Float64Array.from(out.scores.data);
    },
    async sr(tile, level) {
      const s = await session(level === null ? man.files.fp32 : man.files.sr[level]);
      const out = await s.run(feed(tile));
      const d = out.sr.data;
      return d instanceof Float32Array ? d : Float32Array.from(d);
    },
    /** Create every session and run it once (the first run of a graph allocates and packs). */
    async warm(precision, level) {
      const zero = new Float32Array(3 * t * t);
      if (precision === 'fp32') return this.sr(zero, null);
      if (level === 'auto') await this.controller(zero);
      const levels = level !== 'auto' ? [level] : man.gate ? man.gate.choices : man.bits.map((b) => `a${b}`);
      for (const lv of levels) await this.sr(zero, lv);
    },
    sessions,
  };
}
