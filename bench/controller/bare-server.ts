/** The baseline for heartbeat ingestion: a bare Fastify JSON route, nothing else. */
import Fastify from 'fastify';

const app = Fastify({ logger: false });
app.post('/api/v1/builds/:id/heartbeat', async () => ({ status: 'running', cancelRequested: false }));
const address = await app.listen({ host: '127.0.0.1', port: 0 });
console.log(`bare listening on ${address}`);
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
