// Validates JSON bodies against a schema of src/openapi.json with Ajv
// (JSON Schema 2020-12, as OpenAPI 3.1 has it).
//   node validate.mjs POINTER FILE...
// POINTER: a JSON pointer into the document, e.g.
// /paths/~1api~1v1~1auth~1verify/get/responses/200/content/application~1json/schema
// Prints one line per file; exits 1 when any body does not match.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const Ajv2020 = require("ajv/dist/2020").default;
const addFormats = require("ajv-formats");

const doc = JSON.parse(readFileSync(new URL("../../src/openapi.json",
                                            import.meta.url)));
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema(doc, "openapi");
const [pointer, ...files] = process.argv.slice(2);
const check = ajv.getSchema("openapi#" + pointer);
if (!check) {
  console.error("no schema at " + pointer);
  process.exit(2);
}
let bad = 0;
for (const f of files) {
  const ok = check(JSON.parse(readFileSync(f, "utf8")));
  console.log(f + ": " + (ok ? "valid" : JSON.stringify(check.errors)));
  if (!ok) bad++;
}
process.exit(bad ? 1 : 0);
