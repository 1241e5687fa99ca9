# Connects the way Mastodon's Rails processes (puma, Sidekiq, tootctl, rails runner) do, with the
# environment the container's entry point prepared (exec'd by the entry point in place of the command).
#
# PostgreSQL: config/database.yml (production) gives ActiveRecord's postgresql adapter host, port,
# database, username, password from DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASS and
# `sslmode: ENV['DB_SSLMODE'] || 'prefer'`; the adapter passes them to PG.connect (libpq), which reads
# PGSSLROOTCERT from the environment. Redis: the redis gem given `url: ENV['REDIS_URL']` (URI.parse).
#
# ARGV[0]: a JSON file {"pg": bool, "env_url": bool (probe REDIS_URL), "redis_urls": [...]}; prints one JSON object.
require 'json'
require 'uri'
require 'pg'
require 'redis'

input = JSON.parse(File.read(ARGV[0]))
out = { 'pg' => nil, 'redis' => [] }

if input['pg']
  begin
    conn = PG.connect(host: ENV['DB_HOST'] || 'localhost', port: ENV['DB_PORT'] || 5432,
                      dbname: ENV['DB_NAME'] || 'mastodon_production', user: ENV['DB_USER'] || 'mastodon',
                      password: ENV['DB_PASS'] || '', sslmode: ENV['DB_SSLMODE'] || 'prefer',
                      application_name: '', connect_timeout: 10)
    ssl = conn.exec('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()').getvalue(0, 0) == 't'
    out['pg'] = { 'ok' => true, 'ssl' => ssl, 'sslmode' => conn.conninfo_hash[:sslmode] }
    conn.close
  rescue StandardError => e
    out['pg'] = { 'ok' => false, 'error' => e.message.to_s[0, 200] }
  end
end

urls = (input['env_url'] ? [ENV['REDIS_URL']] : []) + (input['redis_urls'] || [])
urls.each do |url|
  begin
    URI.parse(url)
    redis = Redis.new(url: url, timeout: 5, reconnect_attempts: 0)
    out['redis'] << { 'ok' => true, 'whoami' => redis.acl(:whoami) }
    redis.close
  rescue StandardError => e
    out['redis'] << { 'ok' => false, 'error' => e.class.name }
  end
end

print JSON.generate(out)
