from siteline.cli import main

raise SystemExit(main())
