// Resolve 'meshhost-sdk' to this directory's meshhost.js when running a processor natively,
// e.g. its unit tests:  node --import ./sdk/js/register.mjs --test examples/js-enricher/
import { register } from 'node:module';

const SDK = new URL('./meshhost.js', import.meta.url).href;
const hooks = `export async function resolve(specifier, context, next) {
  if (specifier === 'meshhost-sdk') return { url: ${JSON.stringify(SDK)}, shortCircuit: true };
  return next(specifier, context);
}`;
register(`data:text/javascript,${encodeURIComponent(hooks)}`);
