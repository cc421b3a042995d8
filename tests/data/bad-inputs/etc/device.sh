mknod "$ETC/null-dev" c 1 3
