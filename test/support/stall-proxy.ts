/**
 * A TCP proxy on 127.0.0.1 that a test can black-hole: `stall()` stops forwarding in both
 * directions while every socket stays open, and new connections are accepted and left
 * unanswered — a database host that vanished without a reset (a failover, a fenced primary).
 * `heal()` destroys the stalled connections (as their host's reset would) and forwards again.
 */
import { connect, createServer, type Socket } from 'node:net';

export interface StallProxy {
  port: number;
  stall: () => void;
  heal: () => void;
  close: () => Promise<void>;
}

export async function startStallProxy(targetPort: number): Promise<StallProxy> {
  const sockets = new Set<Socket>();
  let stalled = false;
  const track = (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
  };
  const server = createServer((client) => {
    track(client);
    if (stalled) return; // accepted, never answered
    const upstream = connect(targetPort, '127.0.0.1');
    track(upstream);
    // Forwarding checks `stalled` on every chunk, so a stall holds back what is already in flight too.
    client.on('data', (d) => {
      if (!stalled) upstream.write(d);
    });
    upstream.on('data', (d) => {
      if (!stalled) client.write(d);
    });
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    stall: () => {
      stalled = true;
    },
    heal: () => {
      for (const s of sockets) s.destroy();
      stalled = false;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
