#!/usr/bin/env bash
# Make sure the real servers the tests and the demo use are installed and running:
# PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres) and MariaDB on 127.0.0.1:3306 (root, no password).
# Starts them when they are installed but stopped; installs them from Debian's packages when missing.
set -euo pipefail

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_updated=""
apt_install() {
  [ -n "$apt_updated" ] || { $SUDO apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

wait_for() {  # wait_for NAME COMMAND...
  local name=$1; shift
  for _ in $(seq 1 60); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "ensure-services: $name did not come up" >&2; return 1
}

# --- PostgreSQL -----------------------------------------------------------------------------------
if ! command -v pg_dump >/dev/null || ! command -v pg_restore >/dev/null || ! command -v vacuumdb >/dev/null || ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
  echo "ensure-services: installing PostgreSQL"
  apt_install postgresql postgresql-client
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "ensure-services: starting PostgreSQL"
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  conf=/etc/postgresql/$version/main
  # Tests connect over TCP as postgres without a password, as on the reference machines.
  if ! grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$conf/pg_hba.conf"; then
    $SUDO sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nlocal all all trust' "$conf/pg_hba.conf"
  fi
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for PostgreSQL pg_isready -q -h 127.0.0.1 -p 5432
fi

# --- MariaDB --------------------------------------------------------------------------------------
if ! command -v mysqldump >/dev/null || [ ! -x /usr/sbin/mariadbd ]; then
  echo "ensure-services: installing MariaDB"
  apt_install mariadb-server mariadb-client
fi
if ! mysqladmin --protocol=tcp -h 127.0.0.1 -P 3306 -uroot ping >/dev/null 2>&1; then
  echo "ensure-services: starting MariaDB"
  $SUDO mkdir -p /run/mysqld && $SUDO chown mysql:mysql /run/mysqld 2>/dev/null || true
  $SUDO start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
  wait_for MariaDB mysqladmin --protocol=tcp -h 127.0.0.1 -P 3306 -uroot ping
  # A fresh Debian install authenticates root by unix socket only; the tests use TCP with no password.
  mysql -uroot -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket" 2>/dev/null || true
fi
echo "ensure-services: PostgreSQL and MariaDB are up"
