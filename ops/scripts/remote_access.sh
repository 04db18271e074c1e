#!/usr/bin/env bash
# Runs on the primary as root: lets worker hosts reach its PostgreSQL and Redis over TLS only,
# each host with its own credentials, revocable alone.
#
#   remote_access.sh setup ADDRESS   the private CA, the server certificate for ADDRESS, PostgreSQL
#                                    on ADDRESS with TLS and pg_hba (server_install.sh runs it)
#   remote_access.sh grant           the worker hosts' table privileges (after migrations)
#   remote_access.sh add HOST        (re)issue HOST's PostgreSQL role and Redis user and print its
#                                    access on stdout: database_url=…, redis_url=…, the CA certificate
#   remote_access.sh has HOST        exit status 0 if HOST has both
#   remote_access.sh remove HOST     revoke both; HOST's open connections are closed (HOST: a
#                                    name, or a role name as 'list' prints it)
#   remote_access.sh list            the worker hosts' role names
#
# A host's name is lowercase letters, digits and '-' (what Debian's hostname prints); its role
# and Redis user are trad_host_ and the name with '-' as '_', so no two names share them.
# The CA key never leaves /etc/trad/ca (0700 root). Passwords reach psql and redis-cli on
# stdin, never in arguments; Redis keeps only their SHA-256.
set -Eeuo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ENV_DIR=/etc/trad
CA_DIR=$ENV_DIR/ca
ADDRESS_FILE=$ENV_DIR/listen_address
PG_TLS=/etc/postgresql/trad-tls
PG_HBA_MARK="# trad: worker hosts (ops/scripts/remote_access.sh)"
WORKER_GROUP=trad_workers
ROLE_PREFIX=trad_host_
REDIS_TLS_PORT=6380
WORKER_CA=/etc/trad/ca.crt  # where a worker host keeps the CA certificate

LOG_TAG=access LOG_TO_STDERR=1
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cluster() {  # "VERSION NAME PORT" of the PostgreSQL cluster trad uses
  local line
  line=$(pg_lsclusters --no-header 2>/dev/null | awk '$4 == "online" {print $1, $2, $3; exit}')
  [ -n "$line" ] || line=$(pg_lsclusters --no-header 2>/dev/null | awk '{print $1, $2, $3; exit}')
  [ -n "$line" ] || die "no PostgreSQL cluster found (pg_lsclusters)"
  echo "$line"
}

psql_admin() {  # SQL on stdin, as the postgres superuser, in database trad
  local port
  port=$(cluster | cut -d' ' -f3)
  runuser -u postgres -- psql -p "$port" -d trad -v ON_ERROR_STOP=1 -qtA
}

role_name() {  # the PostgreSQL role and Redis user of a worker host: each name its own
  # Only names already in one form: '-' becomes '_' and nothing else changes, so no two names
  # share a role (node-2, node.2 and Node-2 would all have been trad_host_node_2).
  [[ "$1" =~ ^[a-z0-9][a-z0-9-]{0,40}$ ]] \
    || die "worker host name '$1': lowercase letters, digits and - only (set WORKER_HOST=such a name)"
  echo "$ROLE_PREFIX${1//-/_}"
}

named_role() {  # a host given by name, or by its role as 'list' prints it (a host added under a
  # name no longer accepted: dots or capitals)
  if [[ "$1" =~ ^${ROLE_PREFIX}[a-z0-9_]{1,41}$ ]]; then echo "$1"; else role_name "$1"; fi
}

listen_address() {
  [ -s "$ADDRESS_FILE" ] || die "remote listening is not set up here; deploy the primary with LISTEN_ADDRESS=…"
  cat "$ADDRESS_FILE"
}

# --- the private CA and the server certificate ---------------------------------------------

ensure_ca() {
  install -d -m 0700 -o root -g root "$CA_DIR"
  if [ -s "$CA_DIR/ca.key" ] && [ -s "$CA_DIR/ca.crt" ]; then
    log "private CA $CA_DIR: unchanged"
    return 0
  fi
  (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$CA_DIR/ca.key")
  openssl req -x509 -new -key "$CA_DIR/ca.key" -sha256 -days 3650 -subj "/CN=trad private CA ($(hostname))" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$CA_DIR/ca.crt"
  chmod 0644 "$CA_DIR/ca.crt"
  log "private CA $CA_DIR: created (key 0600 root, kept on this host only)"
}

server_cert_current() {  # the certificate exists, is ours, names ADDRESS and lasts 30 more days
  local crt=$CA_DIR/server.crt
  [ -s "$crt" ] && [ -s "$CA_DIR/server.key" ] || return 1
  openssl verify -CAfile "$CA_DIR/ca.crt" "$crt" >/dev/null 2>&1 || return 1
  openssl x509 -in "$crt" -noout -checkend 2592000 >/dev/null || return 1
  openssl x509 -in "$crt" -noout -ext subjectAltName | grep -q "IP Address:$1\(,\|$\)"
}

ensure_server_cert() {  # ensure_server_cert ADDRESS
  if server_cert_current "$1"; then
    log "server certificate for $1: unchanged"
    return 0
  fi
  local csr ext
  csr=$(mktemp) ext=$(mktemp)
  printf 'subjectAltName=IP:%s,IP:127.0.0.1,DNS:%s,DNS:localhost\nextendedKeyUsage=serverAuth\n' \
    "$1" "$(hostname)" > "$ext"
  (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$CA_DIR/server.key")
  openssl req -new -key "$CA_DIR/server.key" -subj "/CN=$(hostname)" -out "$csr"
  openssl x509 -req -in "$csr" -CA "$CA_DIR/ca.crt" -CAkey "$CA_DIR/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
    -days 825 -sha256 -extfile "$ext" -out "$CA_DIR/server.crt" 2>/dev/null
  chmod 0644 "$CA_DIR/server.crt"
  rm -f "$csr" "$ext"
  log "server certificate for $1 ($(hostname)): issued by the private CA"
}

# --- PostgreSQL ------------------------------------------------------------------------------

install_if_changed() {  # install_if_changed SRC DEST MODE OWNER GROUP; exit status 0 if it wrote
  if [ -f "$2" ] && cmp -s "$1" "$2" && [ "$(stat -c '%a %U %G' "$2")" = "$3 $4 $5" ]; then
    return 1
  fi
  install -m "$3" -o "$4" -g "$5" "$1" "$2"
}

ensure_postgres_tls() {  # ensure_postgres_tls ADDRESS
  local version name port conf_dir changed=0 tmp
  read -r version name port < <(cluster)
  conf_dir=/etc/postgresql/$version/$name
  install -d -m 0750 -o root -g postgres "$PG_TLS"
  install_if_changed "$CA_DIR/server.crt" "$PG_TLS/server.crt" 644 root root && changed=1
  install_if_changed "$CA_DIR/server.key" "$PG_TLS/server.key" 640 root postgres && changed=1
  tmp=$(mktemp)
  cat > "$tmp" <<CONF
# Written by ops/scripts/remote_access.sh: worker hosts connect over TLS with a password.
listen_addresses = 'localhost,$1'
ssl = on
ssl_cert_file = '$PG_TLS/server.crt'
ssl_key_file = '$PG_TLS/server.key'
ssl_min_protocol_version = 'TLSv1.2'
password_encryption = 'scram-sha-256'
CONF
  install_if_changed "$tmp" "$conf_dir/conf.d/trad-remote.conf" 644 postgres postgres && changed=1
  rm -f "$tmp"
  if ! grep -qxF "$PG_HBA_MARK" "$conf_dir/pg_hba.conf"; then
    # Loopback lines above still match first; from the network only TLS with a password, only
    # to database trad, only for members of the worker group. Everything else is refused.
    cat >> "$conf_dir/pg_hba.conf" <<HBA

$PG_HBA_MARK
hostssl   trad  +$WORKER_GROUP  0.0.0.0/0  scram-sha-256
hostssl   trad  +$WORKER_GROUP  ::/0       scram-sha-256
hostnossl all   all             0.0.0.0/0  reject
hostnossl all   all             ::/0       reject
HBA
    changed=1
  fi
  if [ "$changed" -eq 0 ]; then
    log "postgresql TLS on $1:$port: unchanged"
    return 0
  fi
  systemctl restart "postgresql@$version-$name"
  log "postgresql: listens on localhost and $1:$port, TLS on, pg_hba: hostssl scram-sha-256 for +$WORKER_GROUP"
}

ensure_worker_group() {
  psql_admin >/dev/null <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$WORKER_GROUP') THEN
    CREATE ROLE $WORKER_GROUP NOLOGIN;
  END IF;
END \$\$;
SQL
}

grant() {
  ensure_worker_group
  # Reading and writing rows is all a worker does; the schema belongs to role trad (migrations).
  psql_admin >/dev/null <<SQL
GRANT CONNECT, TEMPORARY ON DATABASE trad TO $WORKER_GROUP;
GRANT USAGE ON SCHEMA public TO $WORKER_GROUP;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO $WORKER_GROUP;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO $WORKER_GROUP;
ALTER DEFAULT PRIVILEGES FOR ROLE trad IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO $WORKER_GROUP;
ALTER DEFAULT PRIVILEGES FOR ROLE trad IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO $WORKER_GROUP;
SQL
  log "postgresql: $WORKER_GROUP may read and write trad's rows"
}

setup() {  # setup ADDRESS
  [[ "$1" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || die "LISTEN_ADDRESS must be an IPv4 address, not '$1'"
  ensure_ca
  ensure_server_cert "$1"
  ensure_postgres_tls "$1"
  ensure_worker_group
  if [ "$(cat "$ADDRESS_FILE" 2>/dev/null)" != "$1" ]; then
    printf '%s\n' "$1" > "$ADDRESS_FILE"
    chmod 0644 "$ADDRESS_FILE"
    log "listen address: $1"
  fi
}

# --- worker hosts ----------------------------------------------------------------------------

has() {
  local role
  role=$(role_name "$1")
  [ "$(psql_admin <<<"SELECT 1 FROM pg_roles WHERE rolname = '$role'")" = 1 ] \
    && bash "$SCRIPT_DIR/install_redis.sh" has-user "$role"
}

add() {
  local role pw address port
  role=$(role_name "$1")
  address=$(listen_address)
  port=$(cluster | cut -d' ' -f3)
  pw=$(random_secret)
  ensure_worker_group
  psql_admin >/dev/null <<SQL
DO \$\$ BEGIN
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = '$role') THEN
    ALTER ROLE $role WITH LOGIN PASSWORD '$pw';
  ELSE
    CREATE ROLE $role WITH LOGIN PASSWORD '$pw';
  END IF;
END \$\$;
GRANT $WORKER_GROUP TO $role;
SQL
  printf '%s' "$pw" | bash "$SCRIPT_DIR/install_redis.sh" add-user "$role" >&2
  log "worker host $1: PostgreSQL role and Redis user $role issued"
  printf 'database_url=postgresql+psycopg://%s:%s@%s:%s/trad?sslmode=verify-full&sslrootcert=%s\n' \
    "$role" "$pw" "$address" "$port" "$WORKER_CA"
  printf 'redis_url=rediss://%s:%s@%s:%s/0?ssl_ca_certs=%s\n' "$role" "$pw" "$address" "$REDIS_TLS_PORT" "$WORKER_CA"
  cat "$CA_DIR/ca.crt"
}

remove() {
  local role
  role=$(named_role "$1")
  bash "$SCRIPT_DIR/install_redis.sh" del-user "$role" >&2
  # No new logins first, then close the open ones, then drop the role (it owns nothing).
  psql_admin >/dev/null <<SQL
DO \$\$ BEGIN
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = '$role') THEN
    ALTER ROLE $role NOLOGIN;
    PERFORM pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '$role';
    DROP ROLE $role;
  END IF;
END \$\$;
SQL
  log "worker host $1: PostgreSQL role and Redis user $role revoked"
}

list() {
  psql_admin <<<"SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member \
    JOIN pg_roles g ON g.oid = m.roleid WHERE g.rolname = '$WORKER_GROUP' ORDER BY 1"
}

main() {
  [ "$(id -u)" -eq 0 ] || die "run as root"
  cd /
  case "${1:-}" in
    setup) [ $# -eq 2 ] || die "usage: $0 setup ADDRESS"; setup "$2" ;;
    grant) grant ;;
    add | has | remove) [ $# -eq 2 ] || die "usage: $0 $1 HOST"; "$1" "$2" ;;
    list) list ;;
    *) die "usage: $0 setup ADDRESS | grant | add HOST | has HOST | remove HOST | list" ;;
  esac
}

# Sourced (the tests call its functions), it only defines them.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
