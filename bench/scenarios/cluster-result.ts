// Re-exports of the harness's result helpers for the cluster scenarios, plus small formatting.
export { fromLoop, ratio, type BenchResult, type Goal } from '../result.js';

export const round1OrZero = (x: number): number => (Number.isFinite(x) ? Math.round(x * 10) / 10 : 0);
