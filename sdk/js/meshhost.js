// Write meshhost processors in JavaScript.
//
// A processor is an ES module exporting `init` and `processRecord` (or `process` for a whole
// batch), over plain objects:
//
//   import { ConfigError, to } from 'meshhost-sdk';
//
//   export function init(config, inputs) {
//     if (!inputs[0].field('year')) throw new ConfigError('', 'the input has no field "year"');
//     return [{ name: 'out', schema: inputs[0].schema }];
//   }
//
//   export function processRecord(record) {
//     return { ...record.value, decade: record.value.year - (record.value.year % 10) };
//   }
//
// Values are parsed JSON objects: the host transcodes them from and to the ports' Avro schemas.
// An exception thrown for a record sends that record to the dead-letter topic. Build the
// component with `node sdk/js/build.mjs app.js -o plugin.wasm`.
//
// This module is plain JavaScript with no import: it runs in Node.js too, so a processor's
// logic can be unit-tested natively (see `harness`).

/** A problem with the processor's `with:` configuration (at `path`, e.g. `fields[1]`) or its
 * inputs. Throw it from `init`; throw `ConfigErrors` for several at once. */
export class ConfigError extends Error {
  constructor(path, message) {
    super(path ? `${path}: ${message}` : message);
    this.name = 'ConfigError';
    this.path = path ?? '';
    this.detail = message;
  }
}

/** Several `ConfigError` at once, thrown from `init`. */
export class ConfigErrors extends Error {
  constructor(errors) {
    super(errors.map((e) => e.message).join('; '));
    this.name = 'ConfigErrors';
    this.errors = errors;
  }
}

/** Throw from `processRecord` to reject the record with exactly this message (its dead letter's
 * `meshhost.error`). Any other exception rejects it too, as `"<Name>: <message>"`. */
export class RecordError extends Error {
  constructor(message) {
    super(message);
    this.name = 'RecordError';
  }
}

/** An input port: the upstream id and the Avro schema of its values, parsed (`schema`) and as
 * text (`schemaText`). */
export class Port {
  constructor(name, schemaText) {
    this.name = name;
    this.schemaText = schemaText;
    this.schema = JSON.parse(schemaText);
  }

  /** The fields of a record schema (`[]` for any other schema). */
  fields() {
    const s = this.schema;
    return s && typeof s === 'object' && s.type === 'record' ? [...(s.fields ?? [])] : [];
  }

  /** The field called `name` of a record schema, or `undefined`. */
  field(name) {
    return this.fields().find((f) => f.name === name);
  }
}

/** One record. `value` is the parsed JSON object (`null` for a tombstone); `key` and header
 * values are `Uint8Array` (or `null`); `timestamp` is milliseconds since the Unix epoch or
 * `null`. `index` is its position in the batch (the origin of what derives from it), `input`
 * the input port it arrived on. Return a `Record` (e.g. `record.withValue(v)`) to set the key,
 * headers or timestamp of what you emit; a plain object is a value. */
export class Record {
  constructor({ value = null, key = null, headers = [], timestamp = null, index = 0, input = 0 } = {}) {
    this.value = value;
    this.key = key;
    this.headers = headers;
    this.timestamp = timestamp;
    this.index = index;
    this.input = input;
  }

  /** The value of the last header called `name`, or `null`. */
  header(name) {
    let found = null;
    for (const h of this.headers) if (h.key === name) found = h.value;
    return found;
  }

  /** The key as text (UTF-8), or `null`. */
  keyText() {
    return this.key == null ? null : decoder.decode(this.key);
  }

  /** A copy of this record (key, headers, timestamp) with another value. */
  withValue(value) {
    return new FastRecord(value, this.key, [...this.headers], this.timestamp, this.index, this.input);
  }
}

// The SDK's own way to make a `Record`, positional: the constructor's options object and its
// defaults cost more than the rest of a record's trip in the component's interpreter. The
// objects it makes are `Record`s (same prototype).
function FastRecord(value, key, headers, timestamp, index, input) {
  this.value = value;
  this.key = key;
  this.headers = headers;
  this.timestamp = timestamp;
  this.index = index;
  this.input = input;
}
FastRecord.prototype = Record.prototype;

// The batch a `BatchRecord` reads its key, headers and timestamp from.
const COLUMNS = Symbol('batch columns');

/** The columns of a WIT batch, read record by record on demand: where each key starts and each
 * record's first header is worked out once per batch, the first time anyone asks. */
class BatchColumns {
  constructor(batch) {
    this.batch = batch;
    this.keyStarts = null;
    this.firstHeaders = null;
  }

  key(i) {
    const length = this.batch.keyLengths[i];
    if (length < 0) return null;
    if (this.keyStarts === null) {
      const { keyLengths, valueLengths } = this.batch;
      const starts = new Int32Array(keyLengths.length);
      let at = 0;
      for (let r = 0; r < starts.length; r++) {
        starts[r] = at;
        if (keyLengths[r] > 0) at += keyLengths[r];
        if (valueLengths[r] > 0) at += valueLengths[r];
      }
      this.keyStarts = starts;
    }
    const start = this.keyStarts[i];
    return this.batch.bytes.subarray(start, start + length);
  }

  headers(i) {
    const { headerCounts, headers } = this.batch;
    if (headerCounts[i] === 0) return [];
    if (this.firstHeaders === null) {
      const first = new Int32Array(headerCounts.length);
      let at = 0;
      for (let r = 0; r < first.length; r++) {
        first[r] = at;
        at += headerCounts[r];
      }
      this.firstHeaders = first;
    }
    const start = this.firstHeaders[i];
    return headers.slice(start, start + headerCounts[i]).map((h) => ({ key: h.key, value: h.value ?? null }));
  }

  timestamp(i) {
    const timestamp = this.batch.timestamps[i];
    return timestamp >= 0n ? Number(timestamp) : null;
  }
}

/** Shadows a `BatchRecord` getter with an own property once the processor sets it. */
function ownProperty(record, name, value) {
  Object.defineProperty(record, name, { value, writable: true, enumerable: true, configurable: true });
}

// A `Record` of a WIT batch: its value parsed and its key, headers and timestamp read from the
// batch only when asked for. Most processors never ask, and making them for every record (a key
// view, a headers array, a BigInt converted) cost more than the rest of its way through the SDK.
function BatchRecord(value, index, input, columns) {
  this.value = value;
  this.index = index;
  this.input = input;
  this[COLUMNS] = columns;
}
BatchRecord.prototype = Object.create(Record.prototype, {
  key: {
    get() {
      return this[COLUMNS].key(this.index);
    },
    set(value) {
      ownProperty(this, 'key', value);
    },
  },
  headers: {
    get() {
      const headers = this[COLUMNS].headers(this.index);
      ownProperty(this, 'headers', headers); // the same array every time, as for a `Record`
      return headers;
    },
    set(value) {
      ownProperty(this, 'headers', value);
    },
  },
  timestamp: {
    get() {
      return this[COLUMNS].timestamp(this.index);
    },
    set(value) {
      ownProperty(this, 'timestamp', value);
    },
  },
});

/** What `to` returns: a value or `Record` for a given output port. */
export class Routed {
  constructor(port, value) {
    this.port = port;
    this.value = value;
  }
}

/** Route `value` (an object, `null` for a tombstone, or a `Record`) to output `port` (its index
 * or its name); return it, or an array of them, from `processRecord`. */
export function to(port, value) {
  return new Routed(port, value);
}

// --- logging -------------------------------------------------------------------------------

let logBackend = (level, message) => console.error(`[${level}] ${message}`);

/** Log into the host's log, tagged with the processor's id (to stderr when run natively). */
export const log = {
  debug: (message) => logBackend('debug', String(message)),
  info: (message) => logBackend('info', String(message)),
  warn: (message) => logBackend('warn', String(message)),
  error: (message) => logBackend('error', String(message)),
};

// --- state ---------------------------------------------------------------------------------

/** An in-memory store with the host store's semantics (for native runs and tests). */
export class MemoryState {
  constructor() {
    this.entries = new Map(); // latin-1 string of the key's bytes → [key bytes, value bytes]
  }
  get(key) {
    return this.entries.get(latin1(key))?.[1] ?? null;
  }
  put(key, value) {
    const k = stateBytes(key);
    this.entries.set(latin1(k), [k, stateBytes(value)]);
  }
  delete(key) {
    this.entries.delete(latin1(key));
  }
  scanPrefix(prefix) {
    const p = latin1(prefix);
    return [...this.entries.keys()].filter((k) => k.startsWith(p)).sort().map((k) => this.entries.get(k));
  }
}

function stateBytes(value) {
  if (typeof value === 'string') return encoder.encode(value);
  if (value instanceof Uint8Array) return value;
  throw new TypeError(`state keys and values are strings or Uint8Array, not ${typeof value}`);
}

function latin1(bytes) {
  return String.fromCharCode(...stateBytes(bytes));
}

let stateBackend = new MemoryState();

/** Use the component's WIT `state` import as the store (the build does, for a processor that
 * uses `state`). */
export function setStateBackend(wit) {
  stateBackend = {
    get: (key) => wit.get(key) ?? null,
    put: (key, value) => wit.put(key, value),
    delete: (key) => wit.delete(key),
    scanPrefix: (prefix) => wit.scanPrefix(prefix),
  };
}

/**
 * Durable keyed state: in a component, the host's store, kept per processor and input
 * partition, mirrored to a changelog topic and restored from it after a crash; the writes of a
 * call that traps are dropped. Natively, an in-memory `MemoryState`. Keys and values are
 * `Uint8Array` (a string is taken as UTF-8); `get` returns a `Uint8Array` or `null`,
 * `getString` the value as text. Only a processor that uses `state` is built with the state
 * import (the build sees whether the bundle keeps this object), so stateless ones stay stateless.
 */
export const state = {
  kind: 'meshhost-sdk-state',
  get: (key) => stateBackend.get(stateBytes(key)),
  getString: (key) => {
    const value = stateBackend.get(stateBytes(key));
    return value == null ? null : decoder.decode(value);
  },
  put: (key, value) => stateBackend.put(stateBytes(key), stateBytes(value)),
  delete: (key) => stateBackend.delete(stateBytes(key)),
  scanPrefix: (prefix) => stateBackend.scanPrefix(stateBytes(prefix)),
};

// --- the glue between a processor module and the WIT export --------------------------------

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The reason a record fails with, for an exception thrown while processing it. */
export function describe(error) {
  if (error instanceof RecordError) return error.message;
  if (error instanceof Error) return error.message ? `${error.name}: ${error.message}` : error.name;
  return String(error);
}

function replacer(_key, value) {
  // Avro bytes and fixed travel as strings of code points 0-255.
  if (value instanceof Uint8Array) return String.fromCharCode(...value);
  if (typeof value === 'bigint') return Number(value);
  return value;
}

// How values become JSON text. Natively, with `replacer`; in a component, `createProcessor`
// gives Uint8Array and BigInt a `toJSON` doing the same and drops the replacer: a replacer
// function is called for every property, a large share of a record's cost in the interpreter.
let stringify = (value) => JSON.stringify(value, replacer);

function useToJSON() {
  Object.defineProperty(Uint8Array.prototype, 'toJSON', {
    value() {
      return String.fromCharCode(...this);
    },
    configurable: true,
  });
  Object.defineProperty(BigInt.prototype, 'toJSON', {
    value() {
      return Number(this);
    },
    configurable: true,
  });
  stringify = (value) => JSON.stringify(value);
}

function encodeValue(value) {
  if (value === null || value === undefined) return null;
  let text;
  try {
    text = stringify(value);
  } catch (error) {
    throw new RecordError(`the emitted value is not JSON: ${error.message}`);
  }
  if (text === undefined) throw new RecordError(`the emitted value is not JSON: ${typeof value}`);
  return text;
}

function toBytes(value) {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string') return encoder.encode(value);
  return value;
}

function schemaText(schema) {
  if (typeof schema === 'string') {
    try {
      JSON.parse(schema);
      return schema;
    } catch {
      return JSON.stringify(schema); // a primitive type name such as "string"
    }
  }
  return JSON.stringify(schema);
}

function outputPorts(declared) {
  if (declared && !Array.isArray(declared) && typeof declared === 'object' && !('name' in declared)) {
    declared = Object.entries(declared).map(([name, schema]) => ({ name, schema }));
  } else if (declared && !Array.isArray(declared)) {
    declared = [declared];
  }
  if (!declared || declared.length === 0) throw new ConfigError('', 'the processor declared no output port');
  return declared.map((p, i) => {
    if (!p || typeof p.name !== 'string' || p.schema === undefined) {
      throw new ConfigError('', `init returned an invalid output port at ${i}: expected {name, schema}`);
    }
    return { name: p.name, schema: schemaText(p.schema) };
  });
}

function configErrors(error) {
  if (error instanceof ConfigErrors) return error.errors.map((e) => ({ path: e.path ?? '', message: e.detail ?? e.message }));
  if (error instanceof ConfigError) return [{ path: error.path, message: error.detail }];
  return [{ path: '', message: `init failed: ${describe(error)}` }];
}

/** The outcome of one batch, in the processor's terms. */
class Output {
  constructor(outputs) {
    this.outputs = outputs;
    this.emitted = [];
    this.failures = [];
  }

  /** Emit on output `port` (index or name) a record derived from input record `origin` (its
   * index in the batch): `value` is an object (the record keeps the origin's key, headers and
   * timestamp), `null` (a tombstone) or a `Record`. */
  emit(port, origin, value) {
    const index = this.portIndex(port);
    if (value instanceof Record) {
      this.emitted.push({ port: index, origin, record: wireRecord(value), value: encodeValue(value.value) });
    } else {
      this.emitted.push({ port: index, origin, record: null, value: encodeValue(value) });
    }
  }

  /** Reject input record `index`: the host sends it to the dead-letter topic with `reason`. */
  fail(index, reason) {
    this.failures.push({ index, reason: String(reason) });
  }

  portIndex(port) {
    if (typeof port === 'string') {
      const index = this.outputs.findIndex((p) => p.name === port);
      if (index < 0) throw new RecordError(`no output port named "${port}" (declared: ${this.outputs.map((p) => p.name).join(', ')})`);
      return index;
    }
    if (!Number.isInteger(port) || port < 0 || port >= this.outputs.length) {
      throw new RecordError(`output port ${port} does not exist (${this.outputs.length} declared)`);
    }
    return port;
  }
}

/** The key, headers and timestamp of an emitted `Record`, as the WIT result takes them. (An
 * emitted plain value has none: the result says "the origin's", and the host keeps them.) */
function wireRecord(record) {
  return {
    key: toBytes(record.key),
    headers: record.headers.length ? record.headers.map((h) => ({ key: h.key, value: toBytes(h.value) })) : [],
    timestamp: wireTimestamp(record.timestamp),
  };
}

function emitResult(out, record, result) {
  if (result === null || result === undefined) return;
  if (Array.isArray(result)) {
    for (const item of result) emitResult(out, record, item);
  } else if (result instanceof Routed) {
    out.emit(result.port, record.index, result.value);
  } else if (typeof result === 'object') {
    out.emit(0, record.index, result);
  } else {
    throw new RecordError(`processRecord returned ${typeof result}; expected an object, a Record, to(port, value), an array of them or null`);
  }
}

function defaultProcess(app) {
  const tombstones = app.tombstones ?? 'forward';
  const processRecord = app.processRecord ?? ((record) => record);
  return (input, records, out) => {
    // Indexed, not `for...of`: in the component's interpreter every step of an iterator is a
    // call into self-hosted code, a sizeable part of a record's cost.
    for (let i = 0; i < records.length; i++) {
      const record = records[i];
      if (record.value === null && tombstones !== 'process') {
        if (tombstones === 'forward') out.emit(0, record.index, record);
        continue;
      }
      const emittedMark = out.emitted.length;
      const failuresMark = out.failures.length;
      try {
        const result = processRecord.call(app, record, out);
        if (result !== null && typeof result === 'object' && Object.getPrototypeOf(result) === Object.prototype) {
          // The common case: a new value on port 0, the rest of the record kept.
          out.emitted.push({ port: 0, origin: record.index, record: null, value: encodeValue(result) });
        } else {
          emitResult(out, record, result);
        }
      } catch (error) {
        out.emitted.length = emittedMark;
        out.failures.length = failuresMark;
        out.fail(record.index, describe(error));
      }
    }
  };
}

/** Run `process` over a batch; an exception escaping it fails only the records that throw (the
 * batch is retried record by record, like the host does after a trap). */
function runBatch(process, app, outputs, input, records) {
  const out = new Output(outputs);
  try {
    process.call(app, input, records, out);
    return out;
  } catch (error) {
    if (records.length === 1) {
      const failed = new Output(outputs);
      failed.fail(records[0].index, describe(error));
      return failed;
    }
  }
  const all = new Output(outputs);
  for (const record of records) {
    const alone = new FastRecord(record.value, record.key, record.headers, record.timestamp, 0, record.input);
    const one = runBatch(process, app, outputs, input, [alone]);
    for (const e of one.emitted) all.emitted.push({ ...e, origin: record.index });
    for (const f of one.failures) all.failures.push({ index: record.index, reason: f.reason });
  }
  return all;
}

/**
 * The `meshhost:processor/processor` export for processor module `app` (its `init`,
 * `processRecord` or `process`, and optional `tombstones`: 'forward' (default), 'drop' or
 * 'process'). `hostLog` is the WIT `log` import, when running inside a component.
 */
export function createProcessor(app, hostLog) {
  if (hostLog) {
    logBackend = (level, message) => hostLog(level, message);
    useToJSON();
  }
  const process = app.process ?? defaultProcess(app);
  let outputs = null;
  const processor = {
    init(configText, inputs) {
      let config;
      try {
        config = configText ? JSON.parse(configText) : {};
      } catch (error) {
        return { tag: 'err', val: [{ path: '', message: `configuration is not JSON: ${error.message}` }] };
      }
      try {
        const ports = inputs.map((p) => new Port(p.name, p.schema));
        const declared = app.init ? app.init(config, ports) : [{ name: 'out', schema: ports[0].schemaText }];
        outputs = outputPorts(declared);
      } catch (error) {
        return { tag: 'err', val: configErrors(error) };
      }
      return { outputs, format: 'json' };
    },

    /** The WIT `process`: a column-wise batch in, a column-wise result out. The component glue
     * calls it unbound, hence `processor.` rather than `this.`. */
    process(input, batch) {
      if (!outputs) throw new Error('process called before init');
      const { records, failures } = recordsOf(batch, input);
      const out = runBatch(process, app, outputs, input, records);
      return columnResult(out.emitted, failures.concat(out.failures));
    },

    /** `process` on records given one by one (`key` and `value` bytes or `null`, `headers`,
     * `timestamp` a bigint or `null`), through the same column-wise batch and result as the
     * component: what `harness` runs. Returns the emitted records with their key, value (JSON
     * text), headers and timestamp, the origin's where the result says so. */
    processRecords(input, records) {
      const result = processor.process(input, columnBatch(records));
      return { emitted: rowsOf(result, records), failures: result.failures };
    },
  };
  return processor;
}

const NOT_JSON = Symbol('not JSON');

/** The records of a column-wise WIT batch (see `batch` in wit/processor.wit), and the failures
 * of those whose value is not JSON. */
function recordsOf(batch, input) {
  const { parsed, failures } = batchValues(batch);
  const columns = new BatchColumns(batch);
  const records = [];
  for (let i = 0; i < parsed.length; i++) {
    const value = parsed[i];
    if (value !== NOT_JSON) records.push(new BatchRecord(value, i, input, columns));
  }
  return { records, failures };
}

/** Each value of a batch parsed: `null` for a tombstone, `NOT_JSON` (with a failure) for one
 * that is not JSON. The batch is parsed at once: its values, each wrapped as `[value]`, are
 * joined into one array text. A value that is not exactly one JSON document cannot give an
 * array of n one-element arrays; if that is not what comes out, each is parsed alone to tell
 * which are bad.
 *
 * Keys and values alternate in `bytes`, so the values are moved together: `bytes` is copied in
 * once past the end the joined text can reach, then each value is moved forward into place
 * with `copyWithin` — no view or array per record (each is an object made in the interpreter). */
function batchValues(batch) {
  const { bytes, keyLengths, valueLengths } = batch;
  const n = valueLengths.length;
  let present = 0;
  for (let i = 0; i < n; i++) if (valueLengths[i] >= 0) present++;
  // Before value i the text holds at most 3i + 2 bytes more than the values before it, and the
  // value lies at least `base` plus those values further on: the text never overtakes a value
  // not yet moved.
  const base = 3 * present + 2;
  const joined = new Uint8Array(base + bytes.length);
  joined.set(bytes, base);
  joined[0] = 0x5b; // [
  let at = 1;
  let from = base;
  for (let i = 0; i < n; i++) {
    const keyLength = keyLengths[i];
    if (keyLength > 0) from += keyLength;
    const valueLength = valueLengths[i];
    if (valueLength < 0) continue;
    if (at > 1) joined[at++] = 0x2c; // ,
    joined[at++] = 0x5b;
    joined.copyWithin(at, from, from + valueLength);
    at += valueLength;
    from += valueLength;
    joined[at++] = 0x5d; // ]
  }
  joined[at++] = 0x5d;
  let all = null;
  try {
    all = JSON.parse(decoder.decode(joined.subarray(0, at)));
  } catch {
    all = null;
  }
  const parsed = new Array(n);
  if (Array.isArray(all) && all.length === present) {
    let next = 0;
    let whole = true;
    for (let i = 0; i < n && whole; i++) {
      if (valueLengths[i] < 0) {
        parsed[i] = null;
        continue;
      }
      const one = all[next++];
      whole = Array.isArray(one) && one.length === 1;
      parsed[i] = whole ? one[0] : null;
    }
    if (whole) return { parsed, failures: [] };
  }
  const failures = [];
  from = 0;
  for (let i = 0; i < n; i++) {
    if (keyLengths[i] > 0) from += keyLengths[i];
    const valueLength = valueLengths[i];
    if (valueLength < 0) {
      parsed[i] = null;
      continue;
    }
    try {
      parsed[i] = JSON.parse(decoder.decode(bytes.subarray(from, from + valueLength)));
    } catch (error) {
      failures.push({ index: i, reason: `the value is not JSON: ${error.message}` });
      parsed[i] = NOT_JSON;
    }
    from += valueLength;
  }
  return { parsed, failures };
}

/** The column-wise WIT result: every emitted key and value in one buffer, one list per record
 * attribute. Values arrive as JSON text and are written into the buffer with `encodeInto`: no
 * `Uint8Array` per value. An emitted plain value (`record` null) takes the origin's key,
 * headers and timestamp (-2). */
function columnResult(emitted, failures) {
  const n = emitted.length;
  let capacity = 0;
  for (let i = 0; i < n; i++) {
    const { record, value } = emitted[i];
    if (record !== null && record.key != null) capacity += record.key.length;
    // UTF-8 takes at most 3 bytes per UTF-16 code unit.
    if (value != null) capacity += value.length * 3;
  }
  const bytes = new Uint8Array(capacity);
  let at = 0;
  const ports = new Uint32Array(n);
  const origins = new Uint32Array(n);
  const keyLengths = new Int32Array(n);
  const valueLengths = new Int32Array(n);
  const timestamps = new BigInt64Array(n);
  const headerCounts = new Int32Array(n);
  const headers = [];
  for (let i = 0; i < n; i++) {
    const { port, origin, record, value } = emitted[i];
    ports[i] = port;
    origins[i] = origin;
    if (record === null) {
      keyLengths[i] = ORIGIN;
      timestamps[i] = ORIGIN_TIMESTAMP;
      headerCounts[i] = ORIGIN;
    } else {
      const key = record.key;
      if (key == null) {
        keyLengths[i] = -1;
      } else {
        bytes.set(key, at);
        at += key.length;
        keyLengths[i] = key.length;
      }
      timestamps[i] = record.timestamp;
      headerCounts[i] = record.headers.length;
      for (const h of record.headers) headers.push({ key: h.key, value: h.value ?? undefined });
    }
    if (value == null) {
      valueLengths[i] = -1;
    } else {
      const { written } = encoder.encodeInto(value, bytes.subarray(at));
      at += written;
      valueLengths[i] = written;
    }
  }
  return {
    ports,
    origins,
    emitted: { bytes: bytes.subarray(0, at), keyLengths, valueLengths, timestamps, headerCounts, headers },
    failures,
  };
}

// "The origin's", in a result's lengths and timestamps.
const ORIGIN = -2;
const ORIGIN_TIMESTAMP = -2n;

/** Records given one by one as a column-wise WIT batch, as the host lays one out. */
function columnBatch(records) {
  const n = records.length;
  const parts = [];
  const keyLengths = new Int32Array(n);
  const valueLengths = new Int32Array(n);
  const timestamps = new BigInt64Array(n);
  const headerCounts = new Int32Array(n);
  const headers = [];
  records.forEach((r, i) => {
    const key = toBytes(r.key);
    const value = toBytes(r.value);
    keyLengths[i] = key == null ? -1 : key.length;
    valueLengths[i] = value == null ? -1 : value.length;
    if (key != null) parts.push(key);
    if (value != null) parts.push(value);
    timestamps[i] = r.timestamp == null ? -1n : BigInt(r.timestamp);
    headerCounts[i] = (r.headers ?? []).length;
    for (const h of r.headers ?? []) headers.push({ key: h.key, value: toBytes(h.value) ?? undefined });
  });
  const bytes = new Uint8Array(parts.reduce((size, p) => size + p.length, 0));
  let at = 0;
  for (const p of parts) {
    bytes.set(p, at);
    at += p.length;
  }
  return { bytes, keyLengths, valueLengths, timestamps, headerCounts, headers };
}

/** A column-wise WIT result as records (`key`, `value` as JSON text, `headers`, `timestamp` a
 * bigint, -1n for none), the parts marked "the origin's" taken from `inputs`. */
function rowsOf(result, inputs) {
  const { bytes, keyLengths, valueLengths, timestamps, headerCounts, headers } = result.emitted;
  const rows = [];
  let at = 0;
  let header = 0;
  for (let i = 0; i < result.ports.length; i++) {
    const origin = inputs[result.origins[i]];
    const take = (length) => {
      const part = bytes.subarray(at, at + length);
      at += length;
      return part;
    };
    const key = keyLengths[i] === ORIGIN ? toBytes(origin.key) : keyLengths[i] < 0 ? null : take(keyLengths[i]);
    const value = valueLengths[i] < 0 ? null : decoder.decode(take(valueLengths[i]));
    let own = [];
    if (headerCounts[i] === ORIGIN) {
      own = (origin.headers ?? []).map((h) => ({ key: h.key, value: toBytes(h.value) }));
    } else {
      own = headers.slice(header, header + headerCounts[i]).map((h) => ({ key: h.key, value: h.value ?? null }));
      header += headerCounts[i];
    }
    const timestamp = timestamps[i] === ORIGIN_TIMESTAMP ? (origin.timestamp == null ? -1n : BigInt(origin.timestamp)) : timestamps[i];
    rows.push({ port: result.ports[i], origin: result.origins[i], record: { key, value, headers: own, timestamp } });
  }
  return rows;
}

/** A record's timestamp for the WIT: a non-negative bigint, or -1n for none (Kafka has no
 * timestamps before 1970; -2 would mean "the origin's"). */
function wireTimestamp(timestamp) {
  if (timestamp == null) return -1n;
  if (typeof timestamp === 'bigint') return timestamp >= 0n ? timestamp : -1n;
  const ms = Number(timestamp);
  return Number.isFinite(ms) && ms >= 0 ? BigInt(Math.trunc(ms)) : -1n;
}

/**
 * Run a processor module natively, as the host would, for unit tests:
 *
 *   const h = harness(app, { field: 'year' }, [{ name: 'movies', schema: MOVIE_SCHEMA }]);
 *   h.run([{ year: 1994 }]) // => { emitted: [{ port: 'out', origin: 0, value: {...}, ... }], failures: [] }
 *
 * `init` problems throw a `ConfigErrors`.
 */
export function harness(app, config = {}, inputs = []) {
  const processor = createProcessor(app);
  const result = processor.init(JSON.stringify(config), inputs.map((p) => ({ name: p.name, schema: schemaText(p.schema) })));
  if (result.tag === 'err') throw new ConfigErrors(result.val.map((e) => new ConfigError(e.path, e.message)));
  return {
    outputs: result.outputs,
    run(values, input = 0) {
      const records = values.map((v) => {
        const r = v instanceof Record ? v : new Record({ value: v });
        return { key: toBytes(r.key), value: toBytes(encodeValue(r.value)), headers: r.headers, timestamp: r.timestamp == null ? null : BigInt(r.timestamp) };
      });
      const { emitted, failures } = processor.processRecords(input, records);
      return {
        emitted: emitted.map((e) => ({
          port: result.outputs[e.port].name,
          origin: e.origin,
          value: e.record.value == null ? null : JSON.parse(e.record.value),
          key: e.record.key,
          headers: e.record.headers,
          timestamp: e.record.timestamp < 0n ? null : e.record.timestamp,
        })),
        failures,
      };
    },
  };
}
