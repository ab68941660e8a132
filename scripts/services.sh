# Sourced by scripts/test: make sure MariaDB and Redis answer on 127.0.0.1, starting
# (or installing, then starting) them if they do not. Every wait has a deadline.
set -euo pipefail

apt_install() {
  if [ -z "${NETBUS_APT_UPDATED:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    export NETBUS_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

wait_for() {  # wait_for "<description>" <seconds> <command...>
  local what="$1" seconds="$2"; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then echo "$what did not come up in ${seconds}s" >&2; return 1; fi
    sleep 0.5
  done
}

mariadb_ok() { mariadb -h 127.0.0.1 -P 3306 -u root -e 'SELECT 1'; }
redis_ok() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }

ensure_mariadb() {
  if command -v mariadb >/dev/null && mariadb_ok >/dev/null 2>&1; then return 0; fi
  [ -x /usr/sbin/mariadbd ] || apt_install mariadb-server mariadb-client
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
  if [ ! -d /var/lib/mysql/mysql ]; then
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  fi
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  wait_for "MariaDB" 60 mariadb_ok
}

ensure_redis() {
  if command -v redis-cli >/dev/null && redis_ok; then return 0; fi
  command -v redis-server >/dev/null || apt_install redis-server
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  wait_for "Redis" 30 redis_ok
}

ensure_chromium() {
  command -v chromium >/dev/null || apt_install chromium
}

ensure_node() {
  command -v node >/dev/null || apt_install nodejs
}
