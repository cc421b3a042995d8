ln -s loop-b "$ETC/loop-a"; ln -s loop-a "$ETC/loop-b"
