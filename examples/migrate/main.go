// Command migrate shows how to run the application's own db.AutoMigrate at
// start-up under a gormmutex lock, so that replicas that start together do
// not race in GORM's migrator (which checks whether a table or column
// exists, then creates it: two replicas can both decide to create it, and
// one fails, for example on PostgreSQL with a duplicate key in
// pg_type_typname_nsp_index).
//
// Every replica runs the same start-up code. The lock has a Wait, so the
// replicas that do not get it wait for the first one to finish, then run
// AutoMigrate themselves, which finds nothing left to do.
//
// Three connection pools stand in for three replicas:
//
//	go run ./examples/migrate
//	go run ./examples/migrate -dsn 'host=127.0.0.1 user=postgres dbname=test sslmode=disable'
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"gorm.io/gorm"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/examples/internal/exampledb"
)

// The application's models.
type Customer struct {
	ID    uint   `gorm:"primaryKey"`
	Email string `gorm:"size:255;uniqueIndex"`
}

type Order struct {
	ID         uint `gorm:"primaryKey"`
	CustomerID uint `gorm:"index"`
	Customer   Customer
	Total      int64
}

// suffix keeps runs on a shared server apart: the tables and the lock get
// names of their own.
var suffix = strconv.FormatUint(rand.Uint64(), 36)

func (Customer) TableName() string { return "migrate_example_customers_" + suffix }
func (Order) TableName() string    { return "migrate_example_orders_" + suffix }

// migrate is what every replica runs at start-up, before it serves
// anything: gormmutex's own table first (safe to run concurrently), then the
// application's AutoMigrate, one replica at a time.
func migrate(ctx context.Context, db *gorm.DB) (created bool, err error) {
	if err := gormmutex.AutoMigrate(db); err != nil {
		return false, err
	}
	locker, err := gormmutex.New(db, gormmutex.Config{
		TTL:       gormmutex.Duration(time.Minute), // renewed while migrating, so a long migration keeps it
		KeepAlive: true,                            // a crashed replica frees it within a minute
		Wait:      5 * time.Minute,                 // the others wait for the first, then find nothing to do
	})
	if err != nil {
		return false, err
	}
	err = locker.Do(ctx, "schema-migration/"+suffix, func(ctx context.Context) error {
		created = !db.Migrator().HasTable(&Order{})
		return db.WithContext(ctx).AutoMigrate(&Customer{}, &Order{})
	})
	return created, err
}

func main() {
	dsn := flag.String("dsn", "", "database (default: a SQLite file in a temporary directory)")
	flag.Parse()
	log.SetFlags(0)

	first, err := exampledb.Open(*dsn)
	if err != nil {
		log.Fatal(err)
	}
	defer exampledb.Close(first)
	replicas := []*gorm.DB{first}
	for range 2 {
		db, err := exampledb.Open(exampledb.DSN(first))
		if err != nil {
			log.Fatal(err)
		}
		defer exampledb.Close(db)
		replicas = append(replicas, db)
	}
	defer first.Migrator().DropTable(&Order{}, &Customer{})

	// The replicas start together.
	var wg sync.WaitGroup
	var mu sync.Mutex
	creators, failures := 0, 0
	for i, db := range replicas {
		wg.Go(func() {
			created, err := migrate(context.Background(), db)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				failures++
				log.Printf("replica %d: migration failed: %v", i+1, err)
			case created:
				creators++
			}
		})
	}
	wg.Wait()

	fmt.Println("replicas started: 3")
	fmt.Println("replicas whose migration failed:", failures)
	fmt.Println("replicas that created the tables:", creators)
	fmt.Println("tables exist:", first.Migrator().HasTable(&Customer{}) && first.Migrator().HasTable(&Order{}))
	if failures == 0 && creators == 1 {
		fmt.Println("OK: one replica migrated, the others waited and found nothing to do")
	}
}
