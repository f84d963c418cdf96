// enricher: adds the decade of each record's year, and routes records to two outputs:
// `classic` (year before `threshold`) and `modern` (the others).
//
// Configuration (the processor's `with:`):
//   field:     the year field, an int or long (nullable allowed)  (default "year")
//   target:    the name of the added field, an int                 (default "decade")
//   threshold: the first year that is modern                      (default 2000)
//
// Both outputs carry the input schema plus the added field. A record without a year fails:
// it goes to the dead-letter topic with the reason. A tombstone (a deleted key) goes to both
// outputs, since either may hold the key.

import { ConfigError, ConfigErrors, RecordError, log, to } from 'meshhost-sdk';

const INTEGER = new Set(['int', 'long']);

function isInteger(type) {
  if (typeof type === 'string') return INTEGER.has(type);
  if (Array.isArray(type)) return type.some((t) => t !== 'null') && type.every((t) => t === 'null' || isInteger(t));
  return type !== null && typeof type === 'object' && INTEGER.has(type.type) && !type.logicalType;
}

let settings;

// Tombstones come to processRecord too (the SDK's default forwards them on the first output).
export const tombstones = 'process';

export function init(config, inputs) {
  const errors = [];
  if (inputs.length !== 1) throw new ConfigError('', `enricher takes exactly one input, got ${inputs.length}`);
  for (const key of Object.keys(config)) {
    if (!['field', 'target', 'threshold'].includes(key)) errors.push(new ConfigError(key, 'unknown option (expected field, target, threshold)'));
  }
  const { field = 'year', target = 'decade', threshold = 2000 } = config;
  const input = inputs[0];
  if (input.schema?.type !== 'record') throw new ConfigError('', `the input ${input.name} is not a record`);
  const year = input.field(field);
  if (typeof field !== 'string') errors.push(new ConfigError('field', 'must be a field name'));
  else if (!year) errors.push(new ConfigError('field', `no field "${field}" in the input (fields: ${input.fields().map((f) => f.name).join(', ')})`));
  else if (!isInteger(year.type)) errors.push(new ConfigError('field', `field "${field}" is ${JSON.stringify(year.type)}, not an int or long`));
  if (typeof target !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(target)) errors.push(new ConfigError('target', 'must be an Avro field name'));
  else if (input.field(target)) errors.push(new ConfigError('target', `the input already has a field "${target}"`));
  if (!Number.isInteger(threshold)) errors.push(new ConfigError('threshold', 'must be an integer year'));
  if (errors.length) throw new ConfigErrors(errors);

  settings = { field, target, threshold };
  const schema = {
    ...input.schema,
    doc: `${input.schema.name} with its ${target} (by meshhost enricher)`,
    fields: [...input.fields(), { name: target, type: 'int', doc: `the decade of ${field}` }],
  };
  log.info(`enricher: ${field} -> ${target}; classic before ${threshold}, modern from it`);
  return [
    { name: 'classic', schema },
    { name: 'modern', schema },
  ];
}

export function processRecord(record) {
  const { field, target, threshold } = settings;
  if (record.value === null) return [to('classic', null), to('modern', null)];
  const year = record.value[field];
  if (!Number.isInteger(year)) {
    throw new RecordError(`enricher: record has no ${field} (${JSON.stringify(year ?? null)}), so no ${target}`);
  }
  const value = { ...record.value, [target]: Math.floor(year / 10) * 10 };
  return to(year < threshold ? 'classic' : 'modern', value);
}
