/**
 * A local stand-in for the Hugging Face Hub, serving model repos the way the real one does for
 * the calls @huggingface/hub makes: `GET /api/models/<repo>/tree/<rev>` (file listing with LFS
 * oids and sizes) and `GET /<repo>/resolve/<rev>/<file>` (small files directly, LFS files through
 * a 302 to a CDN path; ETag, X-Linked-Size/X-Linked-ETag, Range → 206 with Content-Range).
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeFile {
  data: Buffer;
  lfs: boolean;
}

export interface FakeHub {
  url: string;
  repos: Map<string, Map<string, FakeFile>>;
  /** Every request: method, path and Range header. */
  requests: { method: string; url: string; range: string | undefined }[];
  /** Next full-body response for this file stops after N bytes and drops the connection. */
  cutAfter: Map<string, number>;
  /** Listing reports size + delta for this file (a lying or changed repo). */
  sizeDelta: Map<string, number>;
  /** Listing reports a wrong LFS sha256 for this file. */
  badSha: Set<string>;
  /** Repos that answer 401 unless the request carries this bearer token. */
  tokens: Map<string, string>;
  close(): Promise<void>;
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const gitOid = (b: Buffer) => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');

export async function startFakeHub(): Promise<FakeHub> {
  const hub: Omit<FakeHub, 'url' | 'close'> = {
    repos: new Map(),
    requests: [],
    cutAfter: new Map(),
    sizeDelta: new Map(),
    badSha: new Set(),
    tokens: new Map(),
  };

  function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  }

  function authorized(repo: string, req: IncomingMessage): boolean {
    const want = hub.tokens.get(repo);
    return !want || req.headers.authorization === `Bearer ${want}`;
  }

  function sendFile(req: IncomingMessage, res: ServerResponse, path: string, file: FakeFile) {
    const total = file.data.length;
    const etag = `"${file.lfs ? sha256(file.data) : gitOid(file.data)}"`;
    const range = req.headers.range;
    const m = range ? /^bytes=(\d+)-(\d*)$/.exec(range) : null;
    if (m) {
      const start = Number(m[1]);
      const end = m[2] ? Math.min(Number(m[2]), total - 1) : total - 1;
      if (start >= total) {
        res.writeHead(416, { 'content-range': `bytes */${total}` });
        res.end();
        return;
      }
      res.writeHead(206, { 'content-range': `bytes ${start}-${end}/${total}`, 'content-length': String(end - start + 1), etag, 'accept-ranges': 'bytes', 'content-type': 'application/octet-stream' });
      res.end(file.data.subarray(start, end + 1));
      return;
    }
    const cut = hub.cutAfter.get(path);
    res.writeHead(200, { 'content-length': String(total), etag, 'accept-ranges': 'bytes', 'content-type': 'application/octet-stream' });
    if (cut !== undefined) {
      hub.cutAfter.delete(path);
      res.write(file.data.subarray(0, cut), () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    res.end(file.data);
  }

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    hub.requests.push({ method: req.method!, url: url.pathname + url.search, range: req.headers.range });
    const tree = /^\/api\/models\/([^/]+\/[^/]+)\/tree\/([^/]+)(?:\/(.*))?$/.exec(url.pathname);
    if (tree) {
      const [, repo, , sub] = tree;
      const files = hub.repos.get(repo!);
      if (!files) return sendJson(res, 404, { error: 'Repository not found' }, { 'x-error-code': 'RepoNotFound' });
      if (!authorized(repo!, req)) return sendJson(res, 401, { error: 'Access to model is restricted.' }, { 'x-error-code': 'GatedRepo' });
      const listing = [...files].filter(([p]) => !sub || p.startsWith(sub + '/')).map(([path, f]) => {
        const size = f.data.length + (hub.sizeDelta.get(path) ?? 0);
        const sha = hub.badSha.has(path) ? '0'.repeat(64) : sha256(f.data);
        return f.lfs
          ? { type: 'file', oid: gitOid(Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha}\nsize ${size}\n`)), size, path, lfs: { oid: sha, size, pointerSize: 130 } }
          : { type: 'file', oid: gitOid(f.data), size, path };
      });
      return sendJson(res, 200, listing);
    }
    const cdn = /^\/cdn\/([^/]+\/[^/]+)\/(.+)$/.exec(url.pathname);
    if (cdn) {
      const file = hub.repos.get(cdn[1]!)?.get(cdn[2]!);
      if (!file) return sendJson(res, 404, { error: 'not found' });
      return sendFile(req, res, cdn[2]!, file);
    }
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (resolve) {
      const [, repo, , path] = resolve;
      const files = hub.repos.get(repo!);
      if (!files) return sendJson(res, 404, { error: 'Repository not found' }, { 'x-error-code': 'RepoNotFound' });
      if (!authorized(repo!, req)) return sendJson(res, 401, { error: 'Access restricted' }, { 'x-error-code': 'GatedRepo' });
      const file = files.get(path!);
      if (!file) return sendJson(res, 404, { error: 'Entry not found' }, { 'x-error-code': 'EntryNotFound' });
      if (file.lfs) {
        // Big files: the Hub answers with a redirect to its CDN plus the linked size/etag.
        res.writeHead(302, { location: `/cdn/${repo}/${path}`, 'x-linked-size': String(file.data.length), 'x-linked-etag': `"${sha256(file.data)}"` });
        res.end();
        return;
      }
      return sendFile(req, res, path!, file);
    }
    sendJson(res, 404, { error: 'not found' });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    ...hub,
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}
