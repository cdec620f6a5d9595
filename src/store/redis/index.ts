/** The scale-out cluster's parts, loaded only when `store.redis` is configured (Redis' client takes ~80 ms to load). */
export { ClusterApprovals } from './approvals.js';
export { SharedCounters } from './counters.js';
export { ClusterFeed } from './feed.js';
export { RedisLink, redactUrl } from './link.js';
export { ClusterSync } from './sync.js';
