// Native tests of the JavaScript SDK (no WebAssembly): node --test sdk/js/test/
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { ConfigError, ConfigErrors, MemoryState, Record, RecordError, createProcessor, harness, state, to } from '../meshhost.js';

const SCHEMA = { type: 'record', name: 'T', fields: [{ name: 'n', type: 'long' }, { name: 's', type: 'string' }] };
const INPUTS = [{ name: 'src', schema: SCHEMA }];
const utf8 = (text) => new TextEncoder().encode(text);

test('identity by default, keeping key, headers and timestamp; tombstones forwarded', () => {
  const h = harness({}, {}, INPUTS);
  assert.deepEqual(h.outputs.map((p) => p.name), ['out']);
  const out = h.run([new Record({ value: { n: 1, s: 'é' }, key: utf8('k'), headers: [{ key: 'h', value: utf8('v') }], timestamp: 5 }), new Record({ key: 'gone' })]);
  assert.equal(out.emitted.length, 2);
  assert.deepEqual(out.emitted[0].value, { n: 1, s: 'é' });
  assert.deepEqual(out.emitted[0].key, utf8('k'));
  assert.deepEqual(out.emitted[0].headers, [{ key: 'h', value: utf8('v') }]);
  assert.equal(out.emitted[0].timestamp, 5n);
  assert.equal(out.emitted[1].value, null);
  assert.deepEqual(out.emitted[1].key, utf8('gone'));
});

const router = {
  init(config, inputs) {
    this.limit = config.limit ?? 10;
    return [{ name: 'small', schema: inputs[0].schema }, { name: 'big', schema: inputs[0].schemaText }];
  },
  processRecord(record) {
    const { n } = record.value;
    if (n < 0) throw new RecordError(`negative n: ${n}`);
    if (n === 0) return null;
    if (n === 99) return [to('small', record.value), to('big', record.value)];
    if (n === 7) return record.value.missing.field;
    if (n === 13) return { n, s: new Uint8Array([255]) };
    return to(n < this.limit ? 'small' : 'big', record.value);
  },
};

test('routing, drops and per-record failures', () => {
  const h = harness(router, {}, INPUTS);
  const out = h.run([{ n: 1, s: '' }, { n: 20, s: '' }, { n: -1, s: '' }, { n: 0, s: '' }, { n: 99, s: '' }, { n: 7, s: '' }, { n: 13, s: '' }]);
  assert.deepEqual(out.emitted.map((e) => [e.port, e.origin]), [['small', 0], ['big', 1], ['small', 4], ['big', 4], ['small', 6]]);
  assert.deepEqual(out.emitted.at(-1).value, { n: 13, s: '\xff' });
  assert.deepEqual(out.failures, [
    { index: 2, reason: 'negative n: -1' },
    { index: 5, reason: "TypeError: Cannot read properties of undefined (reading 'field')" },
  ]);
});

test('init declares ports as JSON text and reports config errors with paths', () => {
  const p = createProcessor(router);
  const ok = p.init('{"limit": 3}', [{ name: 'src', schema: JSON.stringify(SCHEMA) }]);
  assert.deepEqual(ok.outputs.map((o) => [o.name, JSON.parse(o.schema)]), [['small', SCHEMA], ['big', SCHEMA]]);
  assert.equal(ok.format, 'json');

  const picky = {
    init(config) {
      if (config.a) throw new ConfigError('a', 'not allowed');
      if (config.b) throw new ConfigErrors([new ConfigError('b', 'one'), new ConfigError('', 'two')]);
      if (config.c) throw new Error('boom');
      return [];
    },
  };
  const errors = (config) => createProcessor(picky).init(config, [{ name: 'src', schema: JSON.stringify(SCHEMA) }]);
  assert.deepEqual(errors('{"a": 1}'), { tag: 'err', val: [{ path: 'a', message: 'not allowed' }] });
  assert.deepEqual(errors('{"b": 1}'), { tag: 'err', val: [{ path: 'b', message: 'one' }, { path: '', message: 'two' }] });
  assert.deepEqual(errors('{"c": 1}'), { tag: 'err', val: [{ path: '', message: 'init failed: Error: boom' }] });
  assert.deepEqual(errors('{}'), { tag: 'err', val: [{ path: '', message: 'the processor declared no output port' }] });
  assert.match(errors('{nope').val[0].message, /^configuration is not JSON/);
});

test('a record that fails emits nothing; bad results and ports fail the record', () => {
  const half = {
    processRecord(record, out) {
      out.emit(0, record.index, record.value);
      throw new RecordError('after emitting');
    },
  };
  assert.deepEqual(harness(half, {}, INPUTS).run([{ n: 1, s: '' }]), { emitted: [], failures: [{ index: 0, reason: 'after emitting' }] });
  const lost = { processRecord: (record) => to('nowhere', record.value) };
  assert.deepEqual(harness(lost, {}, INPUTS).run([{ n: 1, s: '' }]).failures, [{ index: 0, reason: 'no output port named "nowhere" (declared: out)' }]);
  const scalar = { processRecord: () => 42 };
  assert.match(harness(scalar, {}, INPUTS).run([{ n: 1, s: '' }]).failures[0].reason, /processRecord returned number/);
});

test('a batch process that throws is retried record by record', () => {
  const batchWise = {
    process(input, records, out) {
      records.forEach((record, i) => {
        if (record.value.n === 5) throw new Error('five is poison');
        out.emit(0, i, record.value);
      });
    },
  };
  const out = harness(batchWise, {}, INPUTS).run([{ n: 1, s: '' }, { n: 5, s: '' }, { n: 6, s: '' }]);
  assert.deepEqual(out.emitted.map((e) => [e.origin, e.value.n]), [[0, 1], [2, 6]]);
  assert.deepEqual(out.failures, [{ index: 1, reason: 'Error: five is poison' }]);
});

test('tombstone policies', () => {
  assert.deepEqual(harness({ tombstones: 'drop' }, {}, INPUTS).run([null]).emitted, []);
  const seen = { tombstones: 'process', processRecord: (r) => (r.value === null ? { n: 0, s: 'was a tombstone' } : null) };
  assert.deepEqual(harness(seen, {}, INPUTS).run([null]).emitted[0].value, { n: 0, s: 'was a tombstone' });
});

test('any JSON value can be routed (for a non-record output schema); functions cannot', () => {
  const strings = { init: () => [{ name: 'out', schema: 'string' }], processRecord: (r) => to('out', r.value.s) };
  const h = harness(strings, {}, INPUTS);
  assert.equal(h.outputs[0].schema, '"string"');
  assert.deepEqual(h.run([{ n: 1, s: 'x' }]).emitted[0].value, 'x');
  const fn = { processRecord: () => to(0, () => 1) };
  assert.match(harness(fn, {}, INPUTS).run([{ n: 1, s: '' }]).failures[0].reason, /not JSON/);
});

test('the WIT process reads a column-wise batch and answers column-wise', () => {
  const processor = createProcessor({
    processRecord: (r) => (r.value.n === 2 ? null : r.value.n === 3 ? r.withValue({ n: 30, s: r.keyText() }) : { ...r.value, s: r.value.s.toUpperCase() }),
  });
  processor.init('{}', [{ name: 'src', schema: JSON.stringify(SCHEMA) }]);
  const values = ['{"n":1,"s":"a"}', '{"n":2,"s":"b"}', '{"n":3,"s":"c"}'].map(utf8);
  const batch = {
    bytes: new Uint8Array([...utf8('k1'), ...values[0], ...values[1], ...utf8('k3'), ...values[2]]),
    keyLengths: new Int32Array([2, -1, 2]),
    valueLengths: new Int32Array(values.map((v) => v.length)),
    timestamps: new BigInt64Array([9n, -1n, 7n]),
    headerCounts: new Int32Array([1, 0, 1]),
    headers: [{ key: 'h', value: utf8('v') }, { key: 'h3', value: undefined }],
  };
  const result = processor.process(0, batch);
  assert.deepEqual(result.failures, []);
  assert.deepEqual([...result.ports], [0, 0]);
  assert.deepEqual([...result.origins], [0, 2]);
  const { emitted } = result;
  const text = (from, length) => new TextDecoder().decode(emitted.bytes.subarray(from, from + length));
  // A plain value keeps the origin's key, timestamp and headers: -2, the host has them.
  assert.deepEqual([emitted.keyLengths[0], emitted.timestamps[0], emitted.headerCounts[0]], [-2, -2n, -2]);
  assert.deepEqual(JSON.parse(text(0, emitted.valueLengths[0])), { n: 1, s: 'A' });
  // A Record carries its own, read from the batch: record 2's key, timestamp and header.
  const at = emitted.valueLengths[0];
  assert.equal(text(at, emitted.keyLengths[1]), 'k3');
  assert.deepEqual(JSON.parse(text(at + 2, emitted.valueLengths[1])), { n: 30, s: 'k3' });
  assert.equal(emitted.bytes.length, at + 2 + emitted.valueLengths[1]);
  assert.equal(emitted.timestamps[1], 7n);
  assert.deepEqual(emitted.headers, [{ key: 'h3', value: undefined }]);
  assert.equal(emitted.headerCounts[1], 1);
});

test('a record of a batch can be given its own key, headers and timestamp', () => {
  const processor = createProcessor({
    processRecord(r) {
      r.key = `${r.keyText()}!`;
      r.headers.push({ key: 'seen', value: 'yes' });
      r.timestamp += 1;
      return r;
    },
  });
  processor.init('{}', [{ name: 'src', schema: JSON.stringify(SCHEMA) }]);
  const { emitted } = processor.processRecords(0, [{ key: utf8('k'), value: utf8('{"n":1,"s":"a"}'), headers: [{ key: 'h', value: utf8('v') }], timestamp: 41n }]);
  assert.equal(new TextDecoder().decode(emitted[0].record.key), 'k!');
  assert.deepEqual(emitted[0].record.headers.map((h) => [h.key, new TextDecoder().decode(h.value)]), [['h', 'v'], ['seen', 'yes']]);
  assert.equal(emitted[0].record.timestamp, 42n);
});

test('a batch emit finds its origin by index, not position', () => {
  // The host's record 1 had a value that was not JSON, so it never reached `process`.
  const processor = createProcessor({
    process(input, records, out) {
      for (const record of records) out.emit(0, record.index, { n: record.value.n * 10, s: record.value.s });
    },
  });
  processor.init('{}', [{ name: 'src', schema: JSON.stringify(SCHEMA) }]);
  const values = ['{"n":1,"s":"a"}', 'not json', '{"n":2,"s":"b"}'].map(utf8);
  const result = processor.processRecords(0, [
    { key: utf8('k0'), value: values[0], headers: [], timestamp: null },
    { key: utf8('k1'), value: values[1], headers: [], timestamp: null },
    { key: utf8('k2'), value: values[2], headers: [{ key: 'h', value: utf8('v') }], timestamp: null },
  ]);
  assert.deepEqual(result.failures.map((f) => f.index), [1]);
  assert.deepEqual(result.emitted.map((e) => [e.origin, new TextDecoder().decode(e.record.key), e.record.headers.length]), [[0, 'k0', 0], [2, 'k2', 1]]);
});

test('a batch is parsed at once, and values that are not one JSON document each are found', () => {
  const processor = createProcessor({});
  assert.equal(processor.init(JSON.stringify({}), [{ name: 'src', schema: JSON.stringify(SCHEMA) }]).tag, undefined);
  const values = ['{"n":1,"s":"a"}', '1,2', '[3', '4]', null, '{"n":2,"s":"b"}'];
  const { emitted, failures } = processor.processRecords(0, values.map((v) => ({ key: null, value: v == null ? null : utf8(v), headers: [], timestamp: null })));
  assert.deepEqual(failures.map((f) => f.index), [1, 2, 3]);
  assert.match(failures[0].reason, /not JSON/);
  assert.deepEqual(emitted.map((e) => e.origin), [0, 4, 5]);
  assert.deepEqual(JSON.parse(emitted[2].record.value), { n: 2, s: 'b' });
});

test('state: the in-memory store has the host store semantics', () => {
  const store = new MemoryState();
  store.put(utf8('b/1'), utf8('x'));
  store.put(utf8('a/2'), utf8('y'));
  store.put(utf8('b/0'), utf8('z'));
  assert.deepEqual(store.get(utf8('b/1')), utf8('x'));
  assert.equal(store.get(utf8('nope')), null);
  assert.deepEqual(store.scanPrefix(utf8('b/')), [[utf8('b/0'), utf8('z')], [utf8('b/1'), utf8('x')]]);
  store.delete(utf8('b/0'));
  assert.deepEqual(store.scanPrefix(utf8('')).map(([k]) => new TextDecoder().decode(k)), ['a/2', 'b/1']);
  // The SDK's `state` takes strings as UTF-8.
  state.put('k', 'v');
  assert.equal(state.getString('k'), 'v');
  assert.deepEqual(state.get(utf8('k')), utf8('v'));
  state.delete('k');
  assert.equal(state.get('k'), null);
  assert.throws(() => state.put('k', 3), TypeError);
});
