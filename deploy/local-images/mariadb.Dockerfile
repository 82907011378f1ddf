# Stand-in for the official mariadb image: Debian's MariaDB 10.11; MARIADB_ROOT_PASSWORD,
# MARIADB_DATABASE, MARIADB_USER and MARIADB_PASSWORD set up an empty data folder on first start;
# /etc/mysql/conf.d/*.cnf is read; `healthcheck.sh --connect --innodb_initialized` answers.
ARG BASE
FROM ${BASE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends mariadb-server mariadb-client \
    && rm -rf /var/lib/apt/lists/* /var/lib/mysql/* \
    && mkdir -p /run/mysqld /etc/mysql/conf.d && chown mysql:mysql /run/mysqld /var/lib/mysql \
    && printf '[mariadbd]\nbind-address = 0.0.0.0\n' > /etc/mysql/mariadb.conf.d/60-listen-everywhere.cnf
COPY mariadb-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
COPY mariadb-healthcheck.sh /usr/local/bin/healthcheck.sh
VOLUME /var/lib/mysql
EXPOSE 3306
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["mariadbd"]
