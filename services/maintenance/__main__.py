from maintenance.service import main

main()
