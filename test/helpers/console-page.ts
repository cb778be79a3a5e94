// Shared by the console's browser tests: Debian's Chromium and screenshots under test-results/console/.
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { repoRoot } from './launcher.js';
import { slow } from './slow.js';

export const CHROMIUM = '/usr/bin/chromium';
export const haveChromium = existsSync(CHROMIUM);
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'];
export const shotsDir = path.join(repoRoot, 'test-results', 'console');

/** A full-page screenshot for people reading a failure; not part of the property, so a miss is logged, not failed. */
export async function shot(page: Page, name: string): Promise<void> {
  mkdirSync(shotsDir, { recursive: true });
  try {
    await page.screenshot({ path: path.join(shotsDir, name), timeout: slow(5_000), fullPage: true });
  } catch (err) {
    console.warn(`screenshot ${name} not taken: ${(err as Error).message.split('\n')[0]}`);
  }
}
