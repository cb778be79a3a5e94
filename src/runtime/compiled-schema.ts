// A config schema's validator. `npm run build` has ajv compile each schema once into a module of
// plain code (scripts/build-validators.mjs, ajv's standalone output), so a start loads neither ajv
// nor its compiler. That module is used only when it was made from this very schema and these
// options (a digest of both says so); otherwise (a build without that step, the sources run as
// TypeScript by the tests) ajv compiles the schema at first use: the same checks and messages.
import { createHash } from 'node:crypto';
import type { Options, ValidateFunction } from 'ajv';
import { requireCjs } from './require.js';

export interface SchemaSpec {
  /** the file name of its compiled module: validators/NAME.cjs next to this module */
  name: string;
  schema: object;
  options: Options;
}

/** What a compiled module must have been made from. */
export function schemaDigest(spec: SchemaSpec): string {
  return createHash('sha256').update(JSON.stringify([spec.schema, spec.options])).digest('hex');
}

export function compiledValidator(spec: SchemaSpec): ValidateFunction {
  try {
    const mod = requireCjs(`./validators/${spec.name}.cjs`) as ValidateFunction & { digest?: string };
    if (mod.digest === schemaDigest(spec)) return mod;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw err;
  }
  const { Ajv } = requireCjs('ajv') as typeof import('ajv');
  return new Ajv(spec.options).compile(spec.schema);
}

/** A spec's validator, made at its first use: processes that never validate that config skip the cost. */
export function lazyValidator(spec: SchemaSpec): () => ValidateFunction {
  let compiled: ValidateFunction | undefined;
  return () => (compiled ??= compiledValidator(spec));
}
