// manifest.json of an export folder: the subset of granular_mobile/runtime/manifest.py the
// browser needs (schema check, the onnx target, sha256 of every graph, model id). No DOM.

export const SCHEMA_VERSION = 1;

export class ManifestError extends Error {}

/** Python's json.dumps(obj, sort_keys=True) for dicts / lists / strings / ints / bools / null. */
export function pyJson(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return `[${v.map(pyJson).join(', ')}]`;
  if (typeof v === 'object') {
    return `{${Object.keys(v).sort().map((k) => `${pyString(k)}: ${pyJson(v[k])}`).join(', ')}}`;
  }
  if (typeof v === 'string') return pyString(v);
  if (typeof v === 'number' && !Number.isInteger(v)) throw new Error('pyJson: floats are not needed here');
  return String(v);
}

function pyString(s) { // ensure_ascii
  return JSON.stringify(s).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export async function sha256Hex(bytes) {
  const d = await globalThis.crypto.subtle.digest('SHA-256', bytes);
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * Check a parsed manifest.json and return what the page uses:
 * {scale, tile, bits, levels: [name], levelBits: {name: bits}, gate: {choices, costs, budget} | null,
 *  files: {controller, sr: {level name: file}, fp32}, raw}. A manifest before levels gives its
 * bit levels as levels a<bits>. Throws ManifestError for a manifest this page does not understand.
 */
export function parseManifest(m, where = 'manifest.json') {
  if (typeof m !== 'object' || m === null || Array.isArray(m)) throw new ManifestError(`${where} is not a JSON object`);
  if (m.schema_version !== SCHEMA_VERSION) {
    throw new ManifestError(`${where}: schema_version ${JSON.stringify(m.schema_version ?? null)} is not supported by this `
      + `page (it reads version ${SCHEMA_VERSION}); export the model with a matching gdq, or update the demo`);
  }
  const need = (ok, what) => { if (!ok) throw new ManifestError(`${where}: ${what}`); };
  need(Number.isInteger(m.scale) && m.scale >= 1, `'scale' must be a positive integer, got ${JSON.stringify(m.scale)}`);
  need(Number.isInteger(m.tile) && m.tile >= 8, `'tile' must be an integer >= 8, got ${JSON.stringify(m.tile)}`);
  need(Array.isArray(m.bits) && m.bits.every(Number.isInteger), `'bits' must be a list of integers`);
  const t = m.targets && m.targets.onnx;
  need(t && typeof t === 'object', `has no onnx export (targets: ${Object.keys(m.targets || {}).join(', ') || 'none'}); `
    + 'run gdq export --target onnx');
  need(t.layout === undefined || t.layout === 'NCHW', `onnx layout '${t.layout}' is not NCHW`);
  need(typeof t.controller === 'string', 'the onnx target names no controller graph');
  const sr = t.sr || {};
  for (const b of m.bits) need(typeof sr[String(b)] === 'string', `no onnx graph for ${b} bits`);
  // levels: what one static graph computes (bits, blocks); the bit levels alone before levels
  const levelList = Array.isArray(m.levels) && m.levels.length ? m.levels : m.bits.map((b) => ({ name: `a${b}`, bits: b }));
  const levelFiles = t.levels || Object.fromEntries(m.bits.map((b) => [`a${b}`, sr[String(b)]]));
  for (const lv of levelList) {
    need(typeof lv.name === 'string' && Number.isInteger(lv.bits), `levels: ${JSON.stringify(lv)} is not a level`);
    need(typeof levelFiles[lv.name] === 'string', `no onnx graph for level ${lv.name}`);
  }
  let gate = null;
  if (m.level_gate) {
    const g = m.level_gate;
    need(Array.isArray(g.choices) && Array.isArray(g.costs) && g.choices.length === g.costs.length && g.choices.length >= 2,
      'level_gate: choices and costs must pair up');
    for (const c of g.choices) need(levelFiles[c] !== undefined, `level_gate choice '${c}' is not a level`);
    need(t.controller_outputs !== undefined && t.controller_outputs.scores === 'scores',
      "the onnx controller graph has no 'scores' output; re-export");
    gate = { choices: [...g.choices], costs: [...g.costs], budget: g.budget };
  }
  const io = m.io || {};
  for (const [k, name] of [['sr_input', 'lr'], ['controller_input', 'lr'], ['sr_output', 'sr']]) {
    need(!io[k] || io[k].name === name, `io.${k}.name is '${io[k] && io[k].name}', this page feeds/reads '${name}'`);
  }
  const files = { controller: t.controller, sr: Object.fromEntries(levelList.map((lv) => [lv.name, levelFiles[lv.name]])),
    fp32: t.fp32 || null };
  for (const name of [files.controller, ...Object.values(files.sr), ...(files.fp32 ? [files.fp32] : [])]) {
    need(m.files && m.files[name] && typeof m.files[name].sha256 === 'string', `'${name}' is not listed in its files`);
  }
  return { scale: m.scale, tile: m.tile, bits: [...m.bits], levels: levelList.map((lv) => lv.name),
    levelBits: Object.fromEntries(levelList.map((lv) => [lv.name, lv.bits])), gate, files, raw: m };
}

/** The files a page fetches and checks: the controller, every level, fp32 if any. */
export function graphNames(man) {
  return [man.files.controller, ...Object.values(man.files.sr), ...(man.files.fp32 ? [man.files.fp32] : [])];
}

/** Raise unless bytes match the manifest's sha256 for that file. */
export async function checkFile(man, name, bytes) {
  const want = man.raw.files[name].sha256;
  if ((await sha256Hex(bytes)) !== want) {
    throw new ManifestError(`'${name}' does not match the sha256 in manifest.json (modified or corrupt file; re-export)`);
  }
}

/** The model id of gdq run --stats: sha256 of json.dumps(files, sort_keys=True), 16 hex digits. */
export async function modelId(man) {
  return (await sha256Hex(new TextEncoder().encode(pyJson(man.raw.files || {})))).slice(0, 16);
}
