export {
  compile, evaluate, DEBIAN_CRS_RULES_DIR, DEBIAN_CRS_SETUP, DEFAULT_LOGGED_HEADERS,
  type CompileOptions, type GuardRequest, type MatchedRule, type Verdict, type Ruleset, type RulesetStats, type SetAside,
} from './engine.js';
export { enableLinearEngine } from './regex.js';
