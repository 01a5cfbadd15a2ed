/**
 * Seeded text for the tokenizer tests: a training corpus for the Python side and the strings both sides encode.
 * Generated here (not hard-coded, not random per run) so a failure names a string index that reproduces.
 * Only whole code points are produced: a lone surrogate cannot cross to Python as UTF-8.
 */

/** mulberry32: tiny, fast, good enough to pick test strings. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rand = () => number;
const int = (r: Rand, lo: number, hi: number): number => lo + Math.floor(r() * (hi - lo + 1));
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const range = (lo: number, hi: number): string[] => Array.from({ length: hi - lo + 1 }, (_, i) => String.fromCodePoint(lo + i));

const ASCII_WORDS = "the of and to in is you that it he was for on are as with his they at be this have from or one had by word but not what all were we when your can said there use an each which she do how their if will up other about out many then them these so some her would make like him into time has look two more write go see number no way could people my than first water been call who oil its now find long down day did get come made may part".split(" ");
const ACCENTED = ["café", "naïve", "Ångström", "façade", "Straße", "ÆØÅ", "œuvre", "Łódź", "São", "Üben", "ñandú", "İstanbul", "ǅemal", "ﬁnance", "Ｆｕｌｌ", "ＡＢＣ１２３"];
const SCRIPTS: readonly string[][] = [
  range(0x3b1, 0x3c9), // Greek
  range(0x430, 0x44f), // Cyrillic
  range(0x627, 0x64a), // Arabic
  range(0x5d0, 0x5ea), // Hebrew
  range(0x905, 0x939), // Devanagari letters
  range(0xe01, 0xe2e), // Thai
  range(0xac00, 0xac40), // Hangul syllables
  range(0x4e00, 0x4e80), // CJK ideographs
  range(0x3041, 0x3093), // Hiragana
  range(0x30a1, 0x30f3), // Katakana
  range(0x10a0, 0x10c5), // Georgian
  range(0x1d400, 0x1d433), // mathematical bold (astral plane)
];
const CJK_PHRASES = ["你好，世界！", "東京は晴れです。", "한국어 텍스트", "日本語とEnglishの混在", "中文（简体）测试", "ｶﾀｶﾅ"];
const COMBINING = ["\u0301", "\u0300", "\u0308", "\u0327", "\u0303", "\u20dd", "\u0336", "\u093e", "\u093f", "\u0e31", "\u05b7"];
const EMOJI = ["😀", "🎉", "👍🏽", "❤️", "☕", "🇯🇵", "🇫🇷", "1️⃣", "👨‍👩‍👧‍👦", "🧑🏿‍💻", "🏳️‍🌈", "👩‍❤️‍💋‍👨", "🐈‍⬛", "✨", "🦄", "🫠"];
const PUNCT = [".", ",", "!", "?", ";", ":", "...", "—", "–", "-", "'", "\"", "“", "”", "«", "»", "(", ")", "[", "]", "{", "}", "<", ">", "@", "#", "$", "%", "^", "&", "*", "_", "=", "+", "/", "\\", "|", "~", "`", "¿", "¡", "§", "©", "€", "£", "¥"];
const SPACES = [" ", "  ", "   ", "     ", "\t", "\t\t", "\n", "\n\n", "\r\n", " \n ", "\u00a0", "\u3000", "\u2009", "\u200b", "\u202f", " \t \n"];
const CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "n't", "'S", "'LL"];
const CODE = ["def f(x):\n    return x ** 2\n", "for (let i = 0; i < n; i++) { sum += a[i]; }", "{\"key\": [1, 2, 3], \"ok\": true}", "SELECT * FROM users WHERE id = 42;", "https://example.com/path?q=1&r=two#frag", "a_b-c.d/e\\f", "x<=y&&z!=0", "#include <stdio.h>"];
const CONTROL = ["\u0000", "\u0001", "\u0007", "\u001b", "\u007f", "\u0085", "\ufeff", "\u200d", "\u2028", "\ufffd", "\ue000"];
/** Every special token string of the test tokenizers, and near misses. */
export const SPECIAL_STRINGS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<s>", "</s>", "<unk>", "<pad>", "[CLS]", "[SEP]", "[MASK]", "[PAD]", "[UNK]", "<mask>", "<tool_call>", "<|eot", "<|eot_id|", "[CLS", "<s", "< s>", "<|EOT_ID|>", "[cls]"];

function word(r: Rand): string {
  const k = r();
  if (k < 0.45) {
    const w = pick(r, ASCII_WORDS);
    const c = r();
    return c < 0.15 ? w[0]!.toUpperCase() + w.slice(1) : c < 0.2 ? w.toUpperCase() : w;
  }
  if (k < 0.52) return pick(r, ACCENTED);
  if (k < 0.75) {
    const script = pick(r, SCRIPTS);
    let s = "";
    for (let i = int(r, 1, 7); i > 0; i--) s += pick(r, script);
    return s;
  }
  if (k < 0.8) return pick(r, CJK_PHRASES);
  if (k < 0.86) return pick(r, ASCII_WORDS) + pick(r, CONTRACTIONS);
  if (k < 0.93) {
    const n = int(r, 0, 5);
    const d = String(Math.floor(r() * 10 ** n));
    return r() < 0.3 ? `${d}.${int(r, 0, 99)}` : r() < 0.2 ? `${d},${String(int(r, 0, 999)).padStart(3, "0")}` : d;
  }
  // letters with combining marks, possibly stacked
  let s = pick(r, ["e", "a", "o", "n", "क", "ก", "ש"]);
  for (let i = int(r, 1, 3); i > 0; i--) s += pick(r, COMBINING);
  return s;
}

function piece(r: Rand): string {
  const k = r();
  if (k < 0.6) return word(r);
  if (k < 0.72) return pick(r, PUNCT).repeat(r() < 0.8 ? 1 : int(r, 2, 4));
  if (k < 0.82) return pick(r, EMOJI);
  if (k < 0.88) return pick(r, SPECIAL_STRINGS);
  if (k < 0.92) return pick(r, CODE);
  if (k < 0.95) return pick(r, CONTROL);
  return pick(r, SPACES);
}

/** One varied string: pieces joined by mostly single spaces, sometimes runs of whitespace or nothing. */
function sentence(r: Rand, maxPieces: number): string {
  const n = int(r, 1, maxPieces);
  let s = r() < 0.1 ? pick(r, SPACES) : "";
  for (let i = 0; i < n; i++) {
    s += piece(r);
    const g = r();
    s += g < 0.7 ? " " : g < 0.85 ? "" : pick(r, SPACES);
  }
  return r() < 0.6 ? s.trimEnd() : s;
}

/** Hand-picked edge cases, then `n` seeded strings. */
export function testStrings(seed: number, n: number): string[] {
  const edge = [
    "", " ", "  ", "\n", "\t", " \n\n ", "a", "A", "Hello world", " Hello world", "Hello  world", "Hello world ", "hello\nworld\r\nagain",
    "I'm sure it's fine, isn't it? They'll say we'd've known.", "HELLO WORLD'S END", "12345678901234567890", "3.14159 2,718 1e10",
    "a".repeat(300), "ab".repeat(150), "🎉".repeat(20), "👨‍👩‍👧‍👦👨‍👩‍👧‍👦", "e\u0301\u0302\u0303", "\u0301 leading combining mark",
    "<|begin_of_text|>Hello<|eot_id|>", "<|im_start|>user\nhi<|im_end|>\n", "[CLS] text [SEP] more [SEP]", "<s>[INST] hi [/INST]</s>",
    "text<mask>text", "text <mask> text", "a <tool_call> b", "\ufffd\ufffd", "\u0000\u0001\u0002", "\ufeffBOM", "Ａｂｃ ｆｕｌｌ ｗｉｄｔｈ", "ﬁ ﬂ ﬃ ⅷ ①",
    "tab\tseparated\tvalues\t", "    indented code", "\t\tdeep\n\t\t\tindent", "mixed 日本語 and English and עברית and العربية",
    "ÀÉÎÕÜ àéîõü", "Straße STRASSE straße", "İIıi", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝐁𝐨𝐥𝐝", "x".repeat(120) + " " + "y".repeat(120),
  ];
  const r = rng(seed);
  const out = [...edge];
  for (let i = 0; i < n; i++) out.push(sentence(r, r() < 0.1 ? 60 : 14));
  return out;
}

/**
 * Training text for the Python tokenizer trainers (a different seed from the test strings). Special-token strings
 * are cut out: a trainer would otherwise learn them as ordinary pieces too, which no real vocabulary has.
 */
export function trainingCorpus(seed: number, n: number): string[] {
  const r = rng(seed);
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    let s = sentence(r, 30);
    for (const t of SPECIAL_STRINGS) s = s.replaceAll(t, "");
    out.push(s);
  }
  return out;
}
