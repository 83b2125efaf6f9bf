from archival.service import main

main()
