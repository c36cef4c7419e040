// The schema both sides are tested against (gpuspawner/lab/schema/api.schema.json): the Python
// tests validate the server's real responses with it, src/api.ts is generated from it (and
// `npm run lint:check` fails when it is stale), and here the front end's samples must pass it.
import Ajv from 'ajv';
import addFormats from 'ajv-formats';

import schema from '../../gpuspawner/lab/schema/api.schema.json';
import { IRoutes } from '../src/api';
import { gpu, HIDDEN_GPU, HISTORY, MIG_GPU, NO_GPU, snapshot } from './samples';

const ajv = new Ajv({ allErrors: true, strict: true });
addFormats(ajv);
ajv.addSchema(schema);

function validate(route: keyof IRoutes, data: unknown): string {
  const check = ajv.getSchema(`${schema.$id}#/properties/${route.replace('/', '~1')}`)!;
  return check(data) ? '' : ajv.errorsText(check.errors);
}

describe('the schema', () => {
  it('names every route the types know', () => {
    const routes: { [R in keyof IRoutes]: true } = {
      'api/gpus': true,
      'api/history': true,
      'api/verify-code': true
    };
    expect(Object.keys(schema.properties).sort()).toEqual(Object.keys(routes).sort());
  });

  it.each([
    ['one GPU', snapshot()],
    ['a MIG instance', snapshot({ gpus: [MIG_GPU] })],
    ['no GPU', NO_GPU],
    ['an allocated GPU that is not visible', HIDDEN_GPU],
    ['a deadline', snapshot({ deadline: { at: '2026-11-25T14:32:00+00:00', reason: null } })],
    ['a lost GPU', snapshot({ gpus: [gpu({ lost: true, utilization: null, errors: {} })] })],
    [
      'a failed field',
      snapshot({ gpus: [gpu({ errors: { power: 'no permission to read power' } })] })
    ]
  ])('accepts the api/gpus sample with %s', (_, sample) => {
    expect(validate('api/gpus', sample)).toBe('');
  });

  it('accepts the api/history and api/verify-code samples', () => {
    expect(validate('api/history', HISTORY)).toBe('');
    expect(validate('api/history', { interval: 0.2, gpus: {} })).toBe('');
    expect(validate('api/verify-code', { code: 'print("VERDICT")' })).toBe('');
  });

  it.each([
    ['an unknown field', { ...snapshot(), extra: 1 }, 'must NOT have additional properties'],
    ['a GPU without lost', snapshot({ gpus: [{ ...gpu(), lost: undefined } as any] }), 'lost'],
    ['GPUs without available', snapshot({ available: false }), 'reason'],
    ['available without GPUs', snapshot({ gpus: [] }), 'must NOT have fewer than 1 items'],
    ['an unreadable deadline', snapshot({ deadline: { at: 'soon', reason: null } }), 'date-time'],
    [
      'a utilisation over 100',
      snapshot({ gpus: [gpu({ utilization: { gpu: 101, memory: 0 } })] }),
      '100'
    ],
    [
      'an unknown field name',
      snapshot({ gpus: [gpu({ unsupported: ['fan' as any] })] }),
      'allowed values'
    ]
  ])('refuses an api/gpus payload with %s', (_, sample, message) => {
    expect(validate('api/gpus', JSON.parse(JSON.stringify(sample)))).toContain(message);
  });

  it('refuses a history point that is not four numbers', () => {
    const bad = { interval: 2, gpus: { 'GPU-a': [[1, 2, 3]] } };
    expect(validate('api/history', bad)).toContain('must NOT have fewer than 4 items');
    bad.gpus['GPU-a'] = [[1, 2, 3, 4, 5]];
    expect(validate('api/history', bad)).toContain('must NOT have more than 4 items');
  });
});
