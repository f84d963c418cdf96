// The enricher's logic, natively: node --import ./sdk/js/register.mjs --test examples/js-enricher/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import { harness, ConfigErrors } from 'meshhost-sdk';
import * as enricher from './enricher.js';

const ALBUM = JSON.parse(readFileSync(new URL('./album.avsc', import.meta.url), 'utf8'));
const INPUTS = [{ name: 'albums', schema: ALBUM }];

test('adds the decade and routes by the threshold', () => {
  const h = harness(enricher, { threshold: 1990 }, INPUTS);
  assert.deepEqual(h.outputs.map((p) => p.name), ['classic', 'modern']);
  const schema = JSON.parse(h.outputs[0].schema);
  assert.deepEqual(schema.fields.map((f) => f.name), ['id', 'title', 'artist', 'year', 'tracks', 'decade']);
  const out = h.run([
    { id: 1, title: 'a', artist: 'x', year: 1959, tracks: [] },
    { id: 2, title: 'b', artist: 'y', year: 1997, tracks: ['t'] },
    { id: 3, title: 'c', artist: 'z', year: null, tracks: [] },
    null,
  ]);
  assert.deepEqual(out.emitted.map((e) => [e.port, e.value?.id, e.value?.decade]), [['classic', 1, 1950], ['modern', 2, 1990], ['classic', undefined, undefined], ['modern', undefined, undefined]]);
  assert.deepEqual(out.emitted.slice(2).map((e) => [e.origin, e.value]), [[3, null], [3, null]]);
  assert.deepEqual(out.failures, [{ index: 2, reason: 'enricher: record has no year (null), so no decade' }]);
});

test('rejects a configuration that does not fit the input', () => {
  assert.throws(
    () => harness(enricher, { field: 'title', target: 'artist', threshold: 'soon', colour: 1 }, INPUTS),
    (error) => {
      assert.ok(error instanceof ConfigErrors);
      assert.deepEqual(error.errors.map((e) => e.path), ['colour', 'field', 'target', 'threshold']);
      return true;
    },
  );
});
