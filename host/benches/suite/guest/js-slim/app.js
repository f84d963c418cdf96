// The bench suite's JavaScript plugin: the E2E pipeline's filter and projection in one
// processor (keep `year >= min_year && country == country`, then keep `fields`, renaming by
// `rename`).

let settings;

export function init(config, inputs) {
  const rename = config.rename ?? {};
  const fields = config.fields.map((name) => [name, rename[name] ?? name]);
  const byName = new Map(inputs[0].fields().map((f) => [f.name, f]));
  settings = { minYear: config.min_year, country: config.country, fields };
  const schema = {
    type: 'record',
    name: 'Slim',
    namespace: 'bench',
    fields: fields.map(([name, renamed]) => ({ ...byName.get(name), name: renamed })),
  };
  return [{ name: 'out', schema }];
}

export function processRecord(record) {
  const value = record.value;
  if (value.year >= settings.minYear && value.country === settings.country) {
    const out = {};
    for (const [name, renamed] of settings.fields) out[renamed] = value[name];
    return out;
  }
  return null;
}
