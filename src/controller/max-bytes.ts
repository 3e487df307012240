/**
 * The `maxBytes` JSON-schema keyword: a string's size in UTF-8 bytes, not characters. Limits on
 * what is stored (a step's command, env values, messages, log chunks) are storage sizes, and
 * `maxLength` counts characters — 64 Ki of them can be 256 KiB. Schemas keep a `maxLength` of the
 * same number as a cheap first bound (a character is at least one byte) and add `maxBytes`.
 */
interface ErrorObject {
  keyword: string;
  message: string;
  params: Record<string, unknown>;
}
interface KeywordDefinition {
  keyword: string;
  type: string;
  schemaType: string;
  errors: boolean;
  compile: (limit: number) => ((data: string) => boolean) & { errors?: ErrorObject[] };
}
/** The part of Ajv this plugin uses (Ajv's own definition type is a union this one belongs to). */
interface KeywordHost {
  addKeyword(definition: never): unknown;
}

/** An Ajv plugin (Fastify's `ajv.plugins`) adding `maxBytes`. */
export function maxBytesKeyword<A extends KeywordHost>(ajv: A): A {
  const definition: KeywordDefinition = {
    keyword: 'maxBytes',
    type: 'string',
    schemaType: 'number',
    errors: true,
    compile: (limit: number) => {
      const check = ((data: string): boolean => {
        if (data.length <= limit / 3 || Buffer.byteLength(data, 'utf8') <= limit) return true;
        check.errors = [{ keyword: 'maxBytes', message: `must be at most ${limit} bytes of UTF-8`, params: { limit } }];
        return false;
      }) as ((data: string) => boolean) & { errors?: ErrorObject[] };
      return check;
    },
  };
  ajv.addKeyword(definition as never);
  return ajv;
}
