// reference.mjs -- expected token ids from an independent implementation of Hugging Face tokenizers
// (@lenml/tokenizers, a fork of transformers.js's tokenizers), for test_tokenizer_conformance.
//
//   node reference.mjs IN.json OUT.json [NAME]
// IN.json:  {"inputs": [text, ...], "tokenizers": [{"name": N, "package": P | null, "json": PATH}, ...],
//            "whole": PATH | null}
// OUT.json: {"N": {"ids": [[id, ...], ...], "decoded": [text, ...], "whole_tokens": K, "whole_seconds": S}, ...}
// Each input is encoded as HF's tokenizer(text) does (add_special_tokens: the post-processor's tokens, special
// tokens in the text recognised) and the ids decoded as HF's decode(ids, skip_special_tokens=True) with
// clean_up_tokenization_spaces off (a tokenizer_config.json setting, not part of tokenizer.json). With
// "whole", that file is encoded in one call and timed (the best of two runs). With NAME, only that tokenizer
// (loading a tokenizer takes seconds, so the test runs one process per tokenizer side by side).
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const [inPath, outPath, only] = process.argv.slice(2);
if (!inPath || !outPath) {
  console.error("usage: node reference.mjs IN.json OUT.json [NAME]");
  process.exit(2);
}
const req = JSON.parse(readFileSync(inPath, "utf8"));
const { TokenizerLoader } = require("@lenml/tokenizers");
const whole = req.whole ? readFileSync(req.whole, "utf8") : null;
const out = {};
for (const spec of req.tokenizers) {
  if (only && spec.name !== only) continue;
  let tok;
  if (spec.package) {
    // The package's own loader: its tokenizer.json with its tokenizer_config.json.
    tok = require(spec.package).fromPreTrained();
  } else {
    // A bare tokenizer.json, read as the generic fast tokenizer reads it.
    tok = TokenizerLoader.fromPreTrained({
      tokenizerJSON: JSON.parse(readFileSync(spec.json, "utf8")),
      tokenizerConfig: { tokenizer_class: "PreTrainedTokenizerFast", clean_up_tokenization_spaces: false },
    });
  }
  const ids = [], decoded = [];
  for (const text of req.inputs) {
    const e = Array.from(tok.encode(text), Number);
    ids.push(e);
    // (decode refuses an empty list; the empty list decodes to the empty text)
    decoded.push(e.length ? tok.decode(e, { skip_special_tokens: true, clean_up_tokenization_spaces: false }) : "");
  }
  const r = { ids, decoded };
  if (whole !== null) {
    let best = Infinity, n = 0;
    for (let k = 0; k < 2; k++) {
      const t0 = process.hrtime.bigint();
      n = tok.encode(whole).length;
      const s = Number(process.hrtime.bigint() - t0) / 1e9;
      if (s < best) best = s;
    }
    r.whole_tokens = n;
    r.whole_seconds = best;
  }
  out[spec.name] = r;
}
writeFileSync(outPath, JSON.stringify(out));
