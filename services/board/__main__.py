from board.service import main

main()
