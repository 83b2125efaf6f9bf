from notifier.service import main

main()
