// The messages every JavaScript client round-trips: text and binary of 0 B, 1 KiB and 1 MiB.
// Text starts with a two-byte character so UTF-8 handling is exercised; the rest is words drawn
// at random from a short list, which compresses well but not trivially. Binary is the same
// bytes with the top bit flipped (so it is not UTF-8).

const WORDS = ['ring', 'socket', 'deflate', 'frame', 'message', 'window', 'inflate', 'core',
  'server', 'client', 'echo', 'context', 'takeover', 'bits', 'json', '{"id":', '},\n'];

function lcg(seed) {
  let x = seed >>> 0;
  return () => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return x >>> 16;
  };
}

function words(bytes) {
  const next = lcg(1);
  const parts = [];
  let len = 0;
  while (len < bytes) {
    const w = WORDS[next() % WORDS.length] + ' ';
    parts.push(w);
    len += w.length;
  }
  return parts.join('').slice(0, bytes);
}

export function text(bytes) {
  return bytes === 0 ? '' : '\u00e9' + words(bytes - 2);
}

export function binary(bytes) {
  const w = words(bytes);
  const out = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) out[i] = w.charCodeAt(i) ^ 0x80;
  return out;
}

export const SIZES = [0, 1024, 1 << 20];
