-- The monitor's own role and database on the compose stack's PostgreSQL server, run by the
-- monitor-db one-shot as the server's superuser on every `up`: it creates what is missing
-- and keeps the role's password equal to MONITOR_DB_PASSWORD, so the script is idempotent and
-- works on the official image and the local stand-in alike (no init-directory conventions).
-- The password is read from the environment, never passed on a command line.
\getenv monitor_password MONITOR_DB_PASSWORD
\if :{?monitor_password}
\else
  \warn 'monitor-db: MONITOR_DB_PASSWORD is not set'
  \quit 1
\endif
SELECT 'CREATE ROLE monitor LOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'monitor') \gexec
SELECT format('ALTER ROLE monitor PASSWORD %L', :'monitor_password') \gexec
SELECT 'CREATE DATABASE monitor OWNER monitor'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'monitor') \gexec
