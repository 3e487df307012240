/**
 * The worker thread of `parsePipelineIsolated`: parses the one pipeline file it is given and
 * posts the result back. Runs nothing else.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { parsePipeline } from './pipeline.ts';

parentPort?.postMessage(parsePipeline(String(workerData)));
