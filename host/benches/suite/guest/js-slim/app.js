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
    // Indexed, as the SDK README's "Per-record code" advises: in the component, `for...of` with
    // destructuring costs about 4 µs more per input record here (0.99× the plain loop vs 1.41×).
    const fields = settings.fields;
    for (let i = 0; i < fields.length; i++) out[fields[i][1]] = value[fields[i][0]];
    return out;
  }
  return null;
}
