touch "$ETC/$(printf "bad\377name")"
