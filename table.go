package gormmutex

import (
	"fmt"
	"strings"

	"gorm.io/gorm"
	gormschema "gorm.io/gorm/schema"
)

// The lock table's name: [Config.Table], or else [TableName] as the
// *gorm.DB's NamingStrategy names tables (its TablePrefix). The name is
// formatted into every statement, so it is checked before any SQL is built:
// letters, digits and underscores, not starting with a digit, and on
// PostgreSQL at most one dot between a schema and a table. Each dialect
// adds its own limits (checkTable) and quotes it. Everything a table needs
// beside itself (MySQL's releases table, SQLite's sequence, PostgreSQL's
// notification channel) is named after it, so that two tables in one
// database share nothing.

// maxTablePart is the longest part (schema or table) of Config.Table that
// Validate accepts; a dialect may allow less (PostgreSQL: 63 bytes).
const maxTablePart = 64

// defaultTable is the table name that GORM's namer gives gormmutex's
// table: TableName with the NamingStrategy's TablePrefix before it. A
// NamingStrategy's TableName would also pluralize or singularize the name
// (SingularTable), which would rename the table of applications that have
// no prefix; only the prefix is taken from it. A Namer of the
// application's own names a model called DBMutex.
func defaultTable(n gormschema.Namer) string {
	switch ns := n.(type) {
	case nil:
		return TableName
	case gormschema.NamingStrategy:
		return ns.TablePrefix + TableName
	case *gormschema.NamingStrategy:
		if ns == nil {
			return TableName
		}
		return ns.TablePrefix + TableName
	}
	return n.TableName("DBMutex")
}

// tableFor returns the lock table's name for db and Config.Table, checked
// by check (the dialect's limits), with an error naming the setting.
func tableFor(db *gorm.DB, table string, check func(string) error) (string, error) {
	from := "Table (table)"
	if table == "" {
		var n gormschema.Namer
		if db.Config != nil {
			n = db.NamingStrategy
		}
		table = defaultTable(n)
		from = "Table (empty: the name from GORM's NamingStrategy)"
	}
	if err := validTable(table); err != nil {
		return "", fmt.Errorf("%w: %s %q: %v", ErrInvalidConfig, from, table, err)
	}
	if err := check(table); err != nil {
		return "", fmt.Errorf("%w: %s %q: %v", ErrInvalidConfig, from, table, err)
	}
	return table, nil
}

// validTable checks the syntax of a table name: one or two parts (schema
// and table) separated by a dot, each 1 to maxTablePart ASCII letters,
// digits and underscores, not starting with a digit.
func validTable(name string) error {
	if strings.Count(name, ".") > 1 {
		return fmt.Errorf("at most one dot (schema.table)")
	}
	for p := range strings.SplitSeq(name, ".") {
		if p == "" || len(p) > maxTablePart {
			return fmt.Errorf("want 1 to %d letters, digits or underscores in each part", maxTablePart)
		}
		for i, r := range p {
			letter := r == '_' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z'
			if !letter && (i == 0 || r < '0' || r > '9') {
				return fmt.Errorf("want ASCII letters, digits and underscores, not starting with a digit")
			}
		}
	}
	return nil
}

// helperTable names a table that belongs to the lock table: for a name
// ending in the default one ("db_mutexes", with or without a prefix before
// it), the prefix and "db_mutex_" + what ("app_db_mutex_releases"), as
// these tables have always been called; for another name, name + "_" + what.
func helperTable(table, what string) string {
	if prefix, ok := strings.CutSuffix(table, TableName); ok {
		return prefix + "db_mutex_" + what
	}
	return table + "_" + what
}

// noSchema is the check of a database where a table name has no schema
// part.
func noSchema(table string) error {
	if strings.Contains(table, ".") {
		return fmt.Errorf("a schema-qualified name is for PostgreSQL only")
	}
	return nil
}
