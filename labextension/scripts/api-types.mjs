// The TypeScript types of the server extension's JSON, generated from the one schema both sides
// are tested against (gpuspawner/lab/schema/api.schema.json) into src/api.ts.
//
//   node scripts/api-types.mjs           # write src/api.ts
//   node scripts/api-types.mjs --check   # fail when src/api.ts is not what the schema gives
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

import { compile } from 'json-schema-to-typescript';
import prettier from 'prettier';

const here = fileURLToPath(new URL('..', import.meta.url));
const SCHEMA = fileURLToPath(
  new URL('../../gpuspawner/lab/schema/api.schema.json', import.meta.url)
);
const TARGET = `${here}src/api.ts`;

const BANNER = `/**
 * The JSON of the gpuspawner server extension's routes. Generated from
 * gpuspawner/lab/schema/api.schema.json by scripts/api-types.mjs: do not edit,
 * change the schema and run \`npm run build:api\`.
 */`;

async function generate() {
  const schema = JSON.parse(await readFile(SCHEMA, 'utf8'));
  const style = (await prettier.resolveConfig(TARGET)) ?? {};
  return compile(schema, 'Routes', {
    bannerComment: BANNER,
    additionalProperties: false,
    // interfaces are named I<Title>, as the rest of the extension names them
    customName: node => (node.title ? `I${node.title}` : undefined),
    style: { ...style, parser: 'typescript' }
  });
}

const generated = await generate();
if (process.argv.includes('--check')) {
  const current = await readFile(TARGET, 'utf8').catch(() => '');
  if (current !== generated) {
    console.error(
      'src/api.ts is not what gpuspawner/lab/schema/api.schema.json gives: run `npm run build:api`'
    );
    process.exit(1);
  }
} else {
  await writeFile(TARGET, generated);
}
