// Connects the way Mastodon's streaming server does, with the environment the container's entry point
// prepared (this script is exec'd by the entry point in place of `node ./streaming/index.js`).
//
// PostgreSQL: the configuration streaming/database.js (configFromEnv, production) builds from the
// environment, restated: without DATABASE_URL, user/password/database/host/port from DB_USER, DB_PASS,
// DB_NAME, DB_HOST, DB_PORT, and DB_SSLMODE mapped as `disable` or '' -> ssl false, `no-verify` ->
// {rejectUnauthorized: false}, any other value -> {} (verified against node's CA store, which
// NODE_EXTRA_CA_CERTS extends at node's start). With DATABASE_URL, pg-connection-string's parse.
// Redis: streaming/redis.js createClient: `new Redis(REDIS_URL, {host, port, db, password})`.
//
// argv[2]: a JSON file {"pg": bool, "env_url": bool (probe REDIS_URL), "redis_urls": [...]}; prints one JSON object.
import fs from 'node:fs';
import pg from 'pg';
import pgConnectionString from 'pg-connection-string';
import { Redis } from 'ioredis';

const env = process.env;

function pgConfig() {
  let config;
  if (env.DATABASE_URL) {
    const parsed = pgConnectionString.parse(env.DATABASE_URL);
    config = {};
    for (const key of ['password', 'host', 'user', 'database']) if (typeof parsed[key] === 'string') config[key] = parsed[key];
    if (parsed.port) config.port = parseInt(parsed.port, 10);
    if (typeof parsed.ssl === 'boolean') config.ssl = parsed.ssl;
    else if (parsed.ssl && typeof parsed.ssl === 'object') {
      config.ssl = { cert: parsed.ssl.cert, key: parsed.ssl.key, ca: parsed.ssl.ca, rejectUnauthorized: parsed.ssl.rejectUnauthorized };
    }
    if (!config.password && env.DB_PASS) config.password = env.DB_PASS;
  } else {
    config = {
      user: env.DB_USER || 'mastodon',
      password: env.DB_PASS || '',
      database: env.DB_NAME || 'mastodon_production',
      host: env.DB_HOST || 'localhost',
      port: parseInt(env.DB_PORT || '5432', 10),
    };
    if (env.DB_SSLMODE) {
      switch (env.DB_SSLMODE) {
        case 'disable':
        case '':
          config.ssl = false;
          break;
        case 'no-verify':
          config.ssl = { rejectUnauthorized: false };
          break;
        default:
          config.ssl = {};
      }
    }
  }
  return { ...config, max: 1, connectionTimeoutMillis: 10000, application_name: '' };
}

async function probePg() {
  const pool = new pg.Pool(pgConfig());
  try {
    const client = await pool.connect();
    try {
      const row = (await client.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')).rows[0];
      const stream = client.connection.stream;
      return { ok: true, ssl: row.ssl, verified: stream.authorized === true };
    } finally {
      client.release();
    }
  } catch (err) {
    return { ok: false, error: String(err && err.message ? err.message : err).slice(0, 200) };
  } finally {
    await pool.end().catch(() => {});
  }
}

async function probeRedis(url) {
  let client;
  try {
    const params = {
      host: env.REDIS_HOST || '127.0.0.1',
      port: parseInt(env.REDIS_PORT || '6379', 10),
      db: 0,
      password: env.REDIS_PASSWORD || undefined,
      // test harness only: fail fast instead of reconnecting forever
      lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, enableOfflineQueue: false, connectTimeout: 5000,
    };
    client = new Redis(url, params);
    client.on('error', () => {});
    await client.connect();
    const whoami = await client.call('ACL', 'WHOAMI');
    return { ok: true, whoami };
  } catch (err) {
    return { ok: false, error: String(err && err.name ? err.name : 'Error') };
  } finally {
    if (client) client.disconnect();
  }
}

const input = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const out = { pg: null, redis: [] };
if (input.pg) out.pg = await probePg();
const urls = [...(input.env_url ? [env.REDIS_URL] : []), ...(input.redis_urls || [])];
for (const url of urls) out.redis.push(await probeRedis(url));
process.stdout.write(JSON.stringify(out));
