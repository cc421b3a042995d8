rm -rf "$ETC/default-only"; ln -s /tmp "$ETC/default-only"
