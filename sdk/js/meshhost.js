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
    return new Record({ ...this, headers: [...this.headers], value });
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
  constructor(outputs, records) {
    this.outputs = outputs;
    this.records = records;
    this.emitted = [];
    this.failures = [];
  }

  /** Emit on output `port` (index or name) a record derived from input record `origin` (its
   * index in the batch): `value` is an object (the record keeps the origin's key, headers and
   * timestamp), `null` (a tombstone) or a `Record`. */
  emit(port, origin, value, source) {
    const index = this.portIndex(port);
    let record;
    if (value instanceof Record) {
      record = value;
    } else {
      const base = source ?? this.records.find((r) => r.index === origin);
      record = new Record({ value, key: base?.key ?? null, headers: base?.headers ?? [], timestamp: base?.timestamp ?? null });
    }
    this.emitted.push({ port: index, origin, record: wireRecord(record, record.value) });
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

/** What is emitted: `record`'s key, headers and timestamp with `value` (as JSON text: the
 * result's buffer is written from the texts at once, see `columnResult`). */
function wireRecord(record, value) {
  return {
    key: toBytes(record.key),
    value: encodeValue(value),
    headers: record.headers.length ? record.headers.map((h) => ({ key: h.key, value: toBytes(h.value) })) : [],
    timestamp: wireTimestamp(record.timestamp),
  };
}

function emitResult(out, record, result) {
  if (result === null || result === undefined) return;
  if (Array.isArray(result)) {
    for (const item of result) emitResult(out, record, item);
  } else if (result instanceof Routed) {
    out.emit(result.port, record.index, result.value, record);
  } else if (typeof result === 'object') {
    out.emit(0, record.index, result, record);
  } else {
    throw new RecordError(`processRecord returned ${typeof result}; expected an object, a Record, to(port, value), an array of them or null`);
  }
}

function defaultProcess(app) {
  const tombstones = app.tombstones ?? 'forward';
  const processRecord = app.processRecord ?? ((record) => record);
  return (input, records, out) => {
    for (const record of records) {
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
          out.emitted.push({ port: 0, origin: record.index, record: wireRecord(record, result) });
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
  const out = new Output(outputs, records);
  try {
    process.call(app, input, records, out);
    return out;
  } catch (error) {
    if (records.length === 1) {
      const failed = new Output(outputs, records);
      failed.fail(records[0].index, describe(error));
      return failed;
    }
  }
  const all = new Output(outputs, records);
  for (const record of records) {
    const alone = new Record({ ...record, index: 0 });
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

    /** `process` on records with their own key, value (bytes) and headers. */
    processRecords(input, records) {
      if (!outputs) throw new Error('process called before init');
      const { parsed, failures } = parseValues(records.map((r) => r.value));
      const batch = [];
      records.forEach((r, index) => {
        if (parsed[index] === NOT_JSON) return;
        const timestamp = r.timestamp == null ? null : Number(r.timestamp);
        batch.push(new FastRecord(parsed[index], r.key ?? null, r.headers ?? [], timestamp, index, input));
      });
      const out = runBatch(process, app, outputs, input, batch);
      return { emitted: out.emitted, failures: failures.concat(out.failures) };
    },
  };
  return processor;
}

const NOT_JSON = Symbol('not JSON');

/** Each value (`Uint8Array` or `null`) parsed: `null` stays a tombstone, one that is not JSON is
 * `NOT_JSON` with a failure. The batch is decoded and parsed at once — each value wrapped as
 * `[value]`, all joined into one array — rather than with a `TextDecoder` and `JSON.parse` per
 * record. A value that is not exactly one JSON document cannot give an array of n one-element
 * arrays; if that is not what comes out, each value is parsed alone to tell which are bad. */
function parseValues(values) {
  let size = 2;
  for (const v of values) if (v != null) size += v.length + 3;
  const joined = new Uint8Array(size);
  let at = 0;
  joined[at++] = 0x5b; // [
  let present = 0;
  for (const v of values) {
    if (v == null) continue;
    if (present++ > 0) joined[at++] = 0x2c; // ,
    joined[at++] = 0x5b;
    joined.set(v, at);
    at += v.length;
    joined[at++] = 0x5d; // ]
  }
  joined[at++] = 0x5d;
  let all = null;
  try {
    all = JSON.parse(decoder.decode(joined.subarray(0, at)));
  } catch {
    all = null;
  }
  if (Array.isArray(all) && all.length === present) {
    const parsed = new Array(values.length);
    let next = 0;
    let whole = true;
    for (let i = 0; i < values.length && whole; i++) {
      if (values[i] == null) {
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
  const parsed = values.map((v, index) => {
    if (v == null) return null;
    try {
      return JSON.parse(decoder.decode(v));
    } catch (error) {
      failures.push({ index, reason: `the value is not JSON: ${error.message}` });
      return NOT_JSON;
    }
  });
  return { parsed, failures };
}

/** The records of a column-wise WIT batch (see `batch` in wit/processor.wit): keys and values
 * one after another in `bytes`, one list per record attribute, -1 for none. Plain loops, no
 * closures: this runs for every record, interpreted. */
function recordsOf(batch, input) {
  const { bytes, keyLengths, valueLengths, timestamps, headerCounts, headers: wireHeaders } = batch;
  const n = keyLengths.length;
  const keys = new Array(n);
  const values = new Array(n);
  let at = 0;
  for (let i = 0; i < n; i++) {
    const keyLength = keyLengths[i];
    if (keyLength >= 0) {
      keys[i] = bytes.subarray(at, at + keyLength);
      at += keyLength;
    } else {
      keys[i] = null;
    }
    const valueLength = valueLengths[i];
    if (valueLength >= 0) {
      values[i] = bytes.subarray(at, at + valueLength);
      at += valueLength;
    } else {
      values[i] = null;
    }
  }
  const { parsed, failures } = parseValues(values);
  const records = [];
  let firstHeader = 0;
  for (let i = 0; i < n; i++) {
    const headers = [];
    const end = firstHeader + headerCounts[i];
    for (; firstHeader < end; firstHeader++) {
      const h = wireHeaders[firstHeader];
      headers.push({ key: h.key, value: h.value ?? null });
    }
    const value = parsed[i];
    if (value === NOT_JSON) continue;
    const timestamp = timestamps[i];
    records.push(new FastRecord(value, keys[i], headers, timestamp >= 0n ? Number(timestamp) : null, i, input));
  }
  return { records, failures };
}

/** The column-wise WIT result: every emitted key and value in one buffer, one list per record
 * attribute. Values arrive as JSON text and are written into the buffer with `encodeInto`: no
 * `Uint8Array` per value. */
function columnResult(emitted, failures) {
  const n = emitted.length;
  let capacity = 0;
  for (const { record } of emitted) {
    if (record.key != null) capacity += record.key.length;
    // UTF-8 takes at most 3 bytes per UTF-16 code unit.
    if (record.value != null) capacity += record.value.length * 3;
  }
  const bytes = new Uint8Array(capacity);
  let at = 0;
  const columns = {
    ports: new Uint32Array(n),
    origins: new Uint32Array(n),
    keyLengths: new Int32Array(n),
    valueLengths: new Int32Array(n),
    timestamps: new BigInt64Array(n),
    headerCounts: new Int32Array(n),
  };
  const headers = [];
  for (let i = 0; i < n; i++) {
    const { port, origin, record } = emitted[i];
    columns.ports[i] = port;
    columns.origins[i] = origin;
    const key = record.key;
    if (key == null) {
      columns.keyLengths[i] = -1;
    } else {
      bytes.set(key, at);
      at += key.length;
      columns.keyLengths[i] = key.length;
    }
    const value = record.value;
    if (value == null) {
      columns.valueLengths[i] = -1;
    } else {
      const { written } = encoder.encodeInto(value, bytes.subarray(at));
      at += written;
      columns.valueLengths[i] = written;
    }
    columns.timestamps[i] = record.timestamp;
    columns.headerCounts[i] = record.headers.length;
    for (const h of record.headers) headers.push({ key: h.key, value: h.value ?? undefined });
  }
  const { ports, origins, keyLengths, valueLengths, timestamps, headerCounts } = columns;
  return {
    ports,
    origins,
    emitted: { bytes: bytes.subarray(0, at), keyLengths, valueLengths, timestamps, headerCounts, headers },
    failures,
  };
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
