from validation.service import main

main()
