#!/bin/sh
# The official image's healthcheck.sh, for the checks the stack asks: the server accepts a
# connection and InnoDB has finished starting.
exec mariadb-admin --protocol=socket --socket=/run/mysqld/mysqld.sock ping >/dev/null 2>&1
