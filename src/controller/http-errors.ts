/**
 * What a client hears when the HTTP layer itself refuses a request: Fastify's own error codes
 * (`FST_*`) and Node's HTTP parser errors, each turned into one of our documented codes so that
 * every answer — even to a request too malformed to reach a route — is `{code, message}`.
 * `test/controller/error-codes.test.ts` checks that this table names every Fastify error a
 * client can meet and maps it to a code of `src/protocol/errors.ts`.
 */
import type { Socket } from 'node:net';
import { ERROR_CODES, type ErrorCode } from '../protocol/errors.ts';

/** Fastify error code → our code. The status is the one our code carries. */
export const FASTIFY_ERROR_MAP = {
  FST_ERR_NOT_FOUND: 'API_NOT_FOUND',
  FST_ERR_VALIDATION: 'API_BAD_REQUEST',
  FST_ERR_BAD_URL: 'API_BAD_REQUEST',
  FST_ERR_INVALID_URL: 'API_BAD_REQUEST',
  FST_ERR_MAX_PARAM_LENGTH: 'API_URI_TOO_LONG',
  FST_ERR_CTP_BODY_TOO_LARGE: 'API_BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'API_UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'API_BAD_REQUEST',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'API_BAD_REQUEST',
  FST_ERR_CTP_INVALID_JSON_BODY: 'API_BAD_REQUEST',
  FST_ERR_ROUTE_MISSING_CONTENT_TYPE: 'API_BAD_REQUEST',
  FST_ERR_ROUTE_MISSING_CONTENT: 'API_BAD_REQUEST',
} as const satisfies Record<string, ErrorCode>;

/**
 * Fastify errors with a client status that cannot reach a client of ours, and why — so the sync
 * test can tell a new Fastify code from one we chose to leave out.
 */
export const FASTIFY_ERRORS_NOT_SENT: Record<string, string> = {
  FST_ERR_CTP_INSTANCE_ALREADY_STARTED: 'thrown at start-up when a parser is added too late, never during a request',
  FST_ERR_HANDLER_TIMEOUT: 'the controller sets no handlerTimeout (long polls end on their own)',
  FST_ERR_ASYNC_CONSTRAINT: 'no route has an async constraint',
};

/** Our code for an error Fastify raised, or undefined when it is not one of Fastify's. */
export function mapFastifyError(fstCode: string | undefined): ErrorCode | undefined {
  return fstCode !== undefined && Object.hasOwn(FASTIFY_ERROR_MAP, fstCode) ? FASTIFY_ERROR_MAP[fstCode as keyof typeof FASTIFY_ERROR_MAP] : undefined;
}

/** Node's HTTP parser error → our code and a message for the client. */
export function clientErrorAnswer(err: NodeJS.ErrnoException): { code: ErrorCode; message: string } {
  switch (err.code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { code: 'API_REQUEST_TIMEOUT', message: 'the request was not received in time' };
    case 'HPE_HEADER_OVERFLOW':
      return { code: 'API_HEADERS_TOO_LARGE', message: 'the request line and headers are larger than the controller accepts (16 KiB)' };
    default:
      return { code: 'API_BAD_REQUEST', message: `malformed HTTP request (${err.code ?? 'parse error'})` };
  }
}

const REASONS: Record<number, string> = { 400: 'Bad Request', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' };

/**
 * Answers a request Node's parser refused — before any route or hook saw it — with our error
 * shape, then closes the connection (its framing can no longer be trusted).
 */
export function answerClientError(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const { code, message } = clientErrorAnswer(err);
  const status = ERROR_CODES[code].status;
  const body = JSON.stringify({ code, message });
  // As Node's own handler does: never write into an answer already under way on this socket.
  const underWay = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent === true;
  if (socket.writable && !underWay) {
    socket.write(
      `HTTP/1.1 ${status} ${REASONS[status] ?? 'Error'}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}
