package main

// programs are the consumer programs, by the module that an install line
// fetched: each uses that module the way its README does, and prints
// "consumer: ok" when what it checks holds.
var programs = map[string]string{
	"github.com/gormmutex/gormmutex": `package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/gormmutex/gormmutex"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
)

func main() {
	dir, err := os.MkdirTemp("", "consumer")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	db, err := gorm.Open(sqlite.Open(filepath.Join(dir, "locks.db")), &gorm.Config{})
	if err != nil {
		panic(err)
	}
	if err := gormmutex.AutoMigrate(db); err != nil {
		panic(err)
	}
	ran := false
	err = gormmutex.Do(db, "consumer", func() error {
		ran = true
		// Held here: a second Do on the same lock id must not run.
		if err := gormmutex.Do(db, "consumer", func() error { return nil }); !errors.Is(err, gormmutex.ErrLocked) {
			return fmt.Errorf("a second Do got %v, want ErrLocked", err)
		}
		return nil
	})
	if err != nil || !ran {
		fmt.Println("consumer: FAIL:", err, ran)
		os.Exit(1)
	}
	fmt.Println("consumer: ok")
}
`,
	"github.com/gormmutex/gormmutex/gocronlock": `package main

import (
	"fmt"

	"github.com/go-co-op/gocron/v2"
	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/gocronlock"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
)

func main() {
	db, err := gorm.Open(sqlite.Open("file::memory:"), &gorm.Config{})
	if err != nil {
		panic(err)
	}
	locker, err := gocronlock.New(db, gormmutex.DefaultConfig())
	if err != nil {
		panic(err)
	}
	s, err := gocron.NewScheduler(gocron.WithDistributedLocker(locker))
	if err != nil {
		panic(err)
	}
	_ = s.Shutdown()
	fmt.Println("consumer: ok")
}
`,
	"github.com/gormmutex/gormmutex/robfigcronlock": `package main

import (
	"fmt"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/robfigcronlock"
	"github.com/robfig/cron/v3"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
)

func main() {
	db, err := gorm.Open(sqlite.Open("file::memory:"), &gorm.Config{})
	if err != nil {
		panic(err)
	}
	locker, err := robfigcronlock.New(db, gormmutex.DefaultConfig())
	if err != nil {
		panic(err)
	}
	c := cron.New(cron.WithChain(locker.Wrapper("hourly")))
	if _, err := c.AddFunc("@every 1h", func() {}); err != nil {
		panic(err)
	}
	fmt.Println("consumer: ok")
}
`,
	"github.com/gormmutex/gormmutex/otelgormmutex": `package main

import (
	"fmt"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/otelgormmutex"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
)

func main() {
	db, err := gorm.Open(sqlite.Open("file::memory:"), &gorm.Config{})
	if err != nil {
		panic(err)
	}
	obs, err := otelgormmutex.New()
	if err != nil {
		panic(err)
	}
	cfg := gormmutex.DefaultConfig()
	cfg.Observer = obs
	if _, err := gormmutex.New(db, cfg); err != nil {
		panic(err)
	}
	fmt.Println("consumer: ok")
}
`,
}
