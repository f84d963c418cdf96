// click-counter: a running count of distinct clicks per user, kept in durable state (the
// JavaScript twin of examples/python-counter).
//
// Each input record is a click {id, user}. The output is {user, clicks}: the user's count so
// far, so the output topic read as a changelog (last value per user) holds every user's total.
// It counts distinct click ids, not records: meshhost delivers at least once, so after a crash
// the records since the last commit come again; remembering the ids already counted
// (`seen/<id>`) makes a replay change nothing, and a replayed click re-emits the current count.

import { ConfigError, RecordError, state } from 'meshhost-sdk';

const COUNT = {
  type: 'record',
  name: 'UserClicks',
  namespace: 'examples',
  fields: [
    { name: 'user', type: 'string' },
    { name: 'clicks', type: 'long' },
  ],
};

export function init(config, inputs) {
  const unknown = Object.keys(config);
  if (unknown.length) throw new ConfigError(unknown[0], 'unknown option; click-counter takes none');
  for (const name of ['id', 'user']) {
    if (!inputs[0].field(name)) throw new ConfigError('', `the input "${inputs[0].name}" has no field "${name}"`);
  }
  return [{ name: 'out', schema: COUNT }];
}

export function processRecord(record) {
  const { id, user } = record.value;
  if (typeof user !== 'string') throw new RecordError("field 'user' is not a string");
  const countKey = `count/${user}`;
  let clicks = Number(state.getString(countKey) ?? '0');
  if (state.get(`seen/${id}`) === null) {
    clicks += 1;
    state.put(`seen/${id}`, '');
    state.put(countKey, String(clicks));
  }
  return { user, clicks };
}
