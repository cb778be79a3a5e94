// Ordinary web traffic as nginx access logs record it, for the CRS speed bench: pages, static
// assets, searches, API calls, tracking parameters; browser, mobile, bot and tool User-Agents;
// referers. Deterministic for a seed.
import type { GuardRequest } from '../src/guard/crs/index.js';

/** xorshift32: the same mix for the same seed. */
export function rng(seed: number): () => number {
  let x = (seed >>> 0) || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x / 0x1_0000_0000;
  };
}

const UAS = [
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36',
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15',
  'Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0',
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1',
  'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.43 Mobile Safari/537.36',
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36 Edg/119.0.2151.97',
  'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)',
  'Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)',
  'curl/7.88.1',
  'python-requests/2.31.0',
  'okhttp/4.12.0',
  'Prometheus/2.45.0',
];
const WORDS = ['blue', 'running', 'shoes', 'winter', 'jacket', 'kids', 'sale', 'organic', 'coffee', 'beans', 'laptop', 'stand', 'garden', 'chair', 'été', 'straße', 'naïve', 'café'];
const SLUGS = ['how-to-choose-running-shoes', 'spring-collection-2024', 'release-notes-v3-2', 'shipping-and-returns', 'about-us', 'privacy-policy', 'careers'];
const SORTS = ['price_asc', 'price_desc', 'newest', 'rating'];
const EXT = ['js', 'css', 'png', 'jpg', 'webp', 'svg', 'woff2'];

/** One ordinary request as an nginx access log records it. */
export function benign(r: () => number): GuardRequest {
  const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)];
  const n = (max: number) => Math.floor(r() * max);
  const hex = (len: number) => Array.from({ length: len }, () => '0123456789abcdef'[n(16)]).join('');
  const uuid = () => `${hex(8)}-${hex(4)}-4${hex(3)}-a${hex(3)}-${hex(12)}`;
  const words = () => Array.from({ length: 1 + n(3) }, () => encodeURIComponent(pick(WORDS)).replace(/%20/g, '+')).join('+');
  let method = 'GET';
  let uri: string;
  const k = r();
  if (k < 0.35) uri = `/static/${pick(['js', 'css', 'img', 'fonts'])}/${pick(['app', 'vendor', 'main', 'logo', 'hero', 'icons'])}.${hex(8)}.${pick(EXT)}`;
  else if (k < 0.40) uri = pick(['/favicon.ico', '/robots.txt', '/sitemap.xml', '/manifest.json', '/apple-touch-icon.png']);
  else if (k < 0.55) uri = pick(['/', `/blog/${2020 + n(5)}/${String(1 + n(12)).padStart(2, '0')}/${pick(SLUGS)}`, `/products/${n(100000)}`, `/category/${pick(WORDS)}?page=${1 + n(20)}&sort=${pick(SORTS)}`, `/${pick(SLUGS)}`]);
  else if (k < 0.65) uri = `/search?q=${words()}&page=${1 + n(5)}${r() < 0.3 ? `&filter=brand%3A${pick(WORDS)}` : ''}`;
  else if (k < 0.85) {
    const api = pick([
      `/api/v1/orders?since=2024-0${1 + n(9)}-0${1 + n(9)}T00:00:00Z&limit=${pick([10, 20, 50, 100])}`,
      `/api/v2/users/${n(1e6)}/cart`,
      `/api/v1/items/${uuid()}`,
      `/api/v1/recommendations?user=${n(1e6)}&ctx=home&exclude=${n(1e5)},${n(1e5)},${n(1e5)}`,
      '/api/v1/events',
      `/graphql?operationName=GetProduct&variables=%7B%22id%22%3A%22${n(99999)}%22%7D`,
      '/healthz',
    ]);
    uri = api;
    if (api === '/api/v1/events' || api.startsWith('/api/v2/users')) method = r() < 0.7 ? 'POST' : 'GET';
  } else if (k < 0.93) uri = `/?utm_source=${pick(['google', 'newsletter', 'facebook', 'twitter'])}&utm_medium=${pick(['cpc', 'email', 'social'])}&utm_campaign=${pick(SLUGS).replace(/-/g, '_')}${r() < 0.5 ? `&gclid=EAIaIQobChMI${hex(20)}` : ''}`;
  else if (k < 0.97) uri = pick([`/login?next=%2Faccount%2Forders`, `/account/orders/${n(1e6)}`, `/logout`, `/cart/add?sku=${hex(10).toUpperCase()}&qty=${1 + n(3)}`, `/password/reset?token=${hex(40)}`]);
  else uri = `/download/${pick(SLUGS)}.pdf`;
  if (method === 'GET') { const m = r(); if (m < 0.03) method = 'HEAD'; else if (m < 0.05) method = 'POST'; else if (m < 0.055) method = 'OPTIONS'; }
  const headers: Record<string, string> = { 'User-Agent': pick(UAS), Host: 'shop.example.com' };
  const ref = r();
  if (ref < 0.45) headers.Referer = `https://shop.example.com/${pick(['', 'search?q=' + words(), 'products/' + n(100000), 'category/' + pick(WORDS)])}`;
  else if (ref < 0.6) headers.Referer = 'https://www.google.com/';
  return { method, uri, protocol: r() < 0.8 ? 'HTTP/1.1' : 'HTTP/2.0', headers, remoteAddr: `198.18.${n(256)}.${1 + n(254)}` };
}

