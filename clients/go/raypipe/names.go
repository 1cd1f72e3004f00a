package raypipe

import (
	"fmt"
	"strconv"
	"strings"
)

// Resource names of the contract: pipelines/{id}, pipelines/{id}/versions/{n}, runs/{id},
// schedules/{id}. Each Name function takes an id or a name already in that form.

// PipelineName returns "pipelines/{id}" for a pipeline id or name.
func PipelineName(id string) string { return withCollection("pipelines", id) }

// VersionName returns "pipelines/{id}/versions/{n}".
func VersionName(pipeline string, number int64) string {
	return fmt.Sprintf("%s/versions/%d", PipelineName(pipeline), number)
}

// RunName returns "runs/{id}" for a run id or name.
func RunName(id string) string { return withCollection("runs", id) }

// ScheduleName returns "schedules/{id}" for a schedule id or name.
func ScheduleName(id string) string { return withCollection("schedules", id) }

// ID returns the last segment of a resource name: "r-1" for "runs/r-1", "3" for
// "pipelines/p/versions/3"; an id is returned as it is.
func ID(name string) string {
	return name[strings.LastIndex(name, "/")+1:]
}

// ParseVersionName splits "pipelines/{id}/versions/{n}" into the pipeline's name and n.
func ParseVersionName(name string) (pipeline string, number int64, err error) {
	parts := strings.Split(name, "/")
	if len(parts) != 4 || parts[0] != "pipelines" || parts[2] != "versions" || parts[1] == "" {
		return "", 0, fmt.Errorf("raypipe: %q is not a version name (pipelines/{id}/versions/{n})", name)
	}
	number, err = strconv.ParseInt(parts[3], 10, 64)
	if err != nil || number < 1 {
		return "", 0, fmt.Errorf("raypipe: %q is not a version name: the version is a number from 1", name)
	}
	return "pipelines/" + parts[1], number, nil
}

func withCollection(collection, idOrName string) string {
	if strings.HasPrefix(idOrName, collection+"/") {
		return idOrName
	}
	return collection + "/" + idOrName
}
