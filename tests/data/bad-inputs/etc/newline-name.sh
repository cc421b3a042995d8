touch "$ETC/new
line"
