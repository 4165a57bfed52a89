// Encode files with the Hugging Face tokenizers library; prints {file: {ids, roundtrip}} as JSON.
// usage: node hf_tokenizer_check.js tokenizer.json file...
const { Tokenizer } = require('tokenizers');
const fs = require('fs');
(async () => {
  const tok = Tokenizer.fromFile(process.argv[2]);
  const out = {};
  for (const f of process.argv.slice(3)) {
    const text = fs.readFileSync(f, 'utf8');
    const ids = Array.from((await tok.encode(text, null, { addSpecialTokens: false })).getIds());
    const withBos = Array.from((await tok.encode(text)).getIds());
    out[f] = { ids, bos: withBos[0], roundtrip: (await tok.decode(ids, false)) === text };
  }
  process.stdout.write(JSON.stringify(out));
})();
