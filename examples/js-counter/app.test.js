// Native test of click-counter (no component, no broker):
//   node --import ./sdk/js/register.mjs --test examples/js-counter/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as app from './app.js';
import { harness, state } from 'meshhost-sdk';

const schema = readFileSync(new URL('./click.avsc', import.meta.url), 'utf8');

test('counts distinct clicks per user and ignores replays', () => {
  const h = harness(app, {}, [{ name: 'clicks', schema }]);
  const clicks = [['c1', 'ann'], ['c2', 'bob'], ['c3', 'ann'], ['c1', 'ann']];
  const out = h.run(clicks.map(([id, user]) => ({ id, user })));
  assert.deepEqual(out.emitted.map((e) => e.value), [
    { user: 'ann', clicks: 1 }, { user: 'bob', clicks: 1 }, { user: 'ann', clicks: 2 }, { user: 'ann', clicks: 2 },
  ]);
  assert.deepEqual(state.scanPrefix('count/').map(([k, v]) => [new TextDecoder().decode(k), new TextDecoder().decode(v)]), [
    ['count/ann', '2'], ['count/bob', '1'],
  ]);
});
