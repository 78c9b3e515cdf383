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
    async sr(tile, bits) {
      const s = await session(bits === null ? man.files.fp32 : man.files.sr[bits]);
      const out = await s.run(feed(tile));
      const d = out.sr.data;
      return d instanceof Float32Array ? d : Float32Array.from(d);
    },
    /** Create every session and run it once (the first run of a graph allocates and packs). */
    async warm(precision, bits) {
      const zero = new Float32Array(3 * t * t);
      if (precision === 'fp32') return this.sr(zero, null);
      if (bits === 'auto') await this.controller(zero);
      for (const b of bits === 'auto' ? man.bits : [bits]) await this.sr(zero, b);
    },
    sessions,
  };
}
